"""Replays through a real monitor: held-out rows raise no drift flag; shifted rows flag the feature."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from conftest import require

from .conftest import rows_body, wait_for

pytestmark = pytest.mark.slow


def replay(monitor, bundle, X: np.ndarray, prefix: str, per_post: int = 100) -> None:
    for start in range(0, len(X), per_post):
        answer = monitor.post(rows_body(bundle, X[start : start + per_post], f"{prefix}-{start}"))
        assert answer.status_code == 200, answer.text


def rows_until_flag(monitor, bundle, X: np.ndarray, feature: str, prefix: str) -> int | None:
    """Send all of ``X``, 100 rows a post; rows sent when ``feature`` was first flagged (None: never)."""
    before = monitor.status()["windows"]["count"]["completed"]
    first = None
    for start in range(0, len(X), 100):
        answer = monitor.post(rows_body(bundle, X[start : start + 100], f"{prefix}-{start}"))
        assert answer.status_code == 200, answer.text
        count = monitor.status()["windows"]["count"]
        if first is None and count["completed"] > before and feature in count["last"]["drifted_features"]:
            first = start + 100
    return first


def test_heldout_replay_raises_no_flag_over_20_windows(shared_monitor, monitored_bundle, heldout_rows):
    status = shared_monitor.status()
    assert status["windows"]["count"]["capacity"] == 100 and status["windows"]["count"]["completed"] == 0
    replay(shared_monitor, monitored_bundle, heldout_rows, "heldout")

    count = shared_monitor.status()["windows"]["count"]
    assert count["completed"] == len(heldout_rows) // 100 >= 20
    assert count["drifted"] == 0, count["last"]
    samples = shared_monitor.samples()
    assert samples['glassbox_monitor_windows_total{window="count"}'] == count["completed"]
    assert samples["glassbox_monitor_rows_total"] == len(heldout_rows)
    flags = {k: v for k, v in samples.items() if k.startswith("glassbox_monitor_drift{")}
    assert len(flags) == 12 and not any(flags.values())
    assert samples['glassbox_monitor_class_mix_drift{window="count"}'] == 0
    # The outlier threshold is the training rows' 99th percentile: held-out rows pass it about as often.
    assert 0.002 < samples["glassbox_monitor_outliers_total"] / len(heldout_rows) < 0.03


def test_age_plus_15_years_is_flagged_within_1000_rows(shared_monitor, monitored_bundle, heldout_rows):
    shifted = heldout_rows[:1000].copy()
    shifted[:, 0] += 15
    sent = rows_until_flag(shared_monitor, monitored_bundle, shifted, "Age", "age")
    assert sent is not None and sent <= 1000
    last = shared_monitor.status()["windows"]["count"]["last"]
    assert last["drifted_features"] == ["Age"] and last["p_values"]["Age"] < 1e-6
    assert shared_monitor.samples()['glassbox_monitor_drift{feature="Age",window="count"}'] == 1


def test_permuted_workclass_is_flagged_within_1000_rows(shared_monitor, monitored_bundle, heldout_rows):
    categories = len(monitored_bundle.manifest.category_map["1"])
    permutation = np.roll(np.arange(categories), 1)  # every category takes the next one's code
    shifted = heldout_rows[1000:2000].copy()
    shifted[:, 1] = permutation[shifted[:, 1].astype(int)]
    sent = rows_until_flag(shared_monitor, monitored_bundle, shifted, "Workclass", "workclass")
    assert sent is not None and sent <= 1000
    last = shared_monitor.status()["windows"]["count"]["last"]
    # The last window holds shifted rows only: Workclass and nothing else (the class mix may move).
    assert last["drifted_features"] == ["Workclass"]


def test_metrics_pass_promtool(shared_monitor):
    promtool = shutil.which("promtool")
    require(promtool, "promtool (apt-get install prometheus)")
    text = shared_monitor.metrics_text()
    for name in (
        "glassbox_monitor_rows_total", "glassbox_monitor_rejected_total", "glassbox_monitor_drift_p_value",
        "glassbox_monitor_drift", "glassbox_monitor_class_mix_p_value", "glassbox_monitor_class_mix_drift",
        "glassbox_monitor_outliers_total", "glassbox_monitor_outlier_score_bucket",
        "glassbox_monitor_window_rows", "glassbox_monitor_window_capacity", "glassbox_monitor_windows_total",
    ):  # fmt: skip
        assert f"\n{name}" in text or text.startswith(name) or f"# TYPE {name} " in text, name
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_time_window_closes_by_the_clock(monitor_factory, monitored_bundle, heldout_rows):
    monitor = monitor_factory(
        GLASSBOX_MONITOR_WINDOW_SECONDS="1", GLASSBOX_MONITOR_WINDOW_MIN_ROWS="50",
        GLASSBOX_MONITOR_TICK_SECONDS="0.2", GLASSBOX_MONITOR_WINDOW_TIME_MAX_ROWS="150",
    )  # fmt: skip
    answer = monitor.post(rows_body(monitored_bundle, heldout_rows[:300], "time"))
    assert answer.status_code == 200 and answer.json()["accepted"] == 300

    wait_for(lambda: monitor.status()["windows"]["time"]["completed"] >= 1, 10, "a time window")
    time_window = monitor.status()["windows"]["time"]
    assert time_window["last"]["rows"] == 300  # every row counted; 150 of them kept and tested
    assert time_window["completed"] == 1 and time_window["drifted"] == 0
    assert monitor.samples()['glassbox_monitor_window_capacity{window="time"}'] == 150
