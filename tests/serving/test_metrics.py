"""The model's metrics in-process: the batched certainty histogram equals prometheus-client's own
``observe``, forwarding totals become counter increments, and every metric has help text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from glassbox.contract.labels import Certainty
from glassbox.serving.forwarder import ForwardStats
from glassbox.serving.metrics import CERTAINTY_BUCKETS, ModelMetrics

CLASSES = ("<=50K", ">50K")


def samples(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name.removeprefix(prefix), tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.startswith(prefix) and not s.name.endswith("_created")
    }


def two_class(p_first: list[float]) -> np.ndarray:
    p = np.asarray(p_first, dtype=float)
    return np.column_stack([p, 1.0 - p])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(0.0, 1.0) | st.sampled_from([0.5, 0.55, 0.7, 0.99, 1.0]), min_size=1, max_size=40),
        min_size=1,
        max_size=5,
    )
)
def test_batched_certainty_equals_one_observe_per_row(requests):
    """Bucket edges included (a value equal to a bound counts in that bucket, as ``observe`` does)."""
    metrics = ModelMetrics(CLASSES)
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "glassbox_model_certainty", "x", buckets=CERTAINTY_BUCKETS, registry=reference_registry
    )
    for p_first in requests:
        certainty = Certainty.of(two_class(p_first))
        metrics.observe(certainty)
        for p in certainty.max_probability:
            reference.observe(float(p))
    ours = {k: v for k, v in samples(metrics.registry, "glassbox_model_certainty").items() if k[0] != "_sum"}
    theirs = {
        k: v for k, v in samples(reference_registry, "glassbox_model_certainty").items() if k[0] != "_sum"
    }
    assert ours == theirs
    total = sum(float(Certainty.of(two_class(p)).max_probability.sum()) for p in requests)
    assert samples(metrics.registry, "glassbox_model_certainty")[("_sum", ())] == pytest.approx(total)


def test_predictions_by_class_exist_at_zero_and_count_rows():
    metrics = ModelMetrics(CLASSES)
    per_class = {
        k[1][0][1]: v
        for k, v in samples(metrics.registry, "glassbox_model_predictions").items()
        if k[0] == "_total"
    }
    assert per_class == {"<=50K": 0.0, ">50K": 0.0}
    metrics.observe(Certainty.of(two_class([0.9, 0.8, 0.1])))
    counted = samples(metrics.registry, "glassbox_model_predictions_total")
    assert counted[("", (("predicted_class", "<=50K"),))] == 2
    assert counted[("", (("predicted_class", ">50K"),))] == 1


def test_forwarding_totals_become_increments_at_most_once_per_interval():
    metrics = ModelMetrics(CLASSES, report_interval=3600)
    stats = ForwardStats(forwarded=5, spilled=2, outbox_depth=2)
    metrics.report(stats)
    stats.forwarded, stats.retries, stats.outbox_depth = 9, 2, 0
    metrics.report(stats)  # within the interval: not copied yet
    counted = samples(metrics.registry, "glassbox_model_")
    assert (counted[("forwarded_total", ())], counted[("outbox_depth", ())]) == (5, 2)
    metrics.report(stats, force=True)
    metrics.report(stats, force=True)  # nothing new: no double counting
    counted = samples(metrics.registry, "glassbox_model_")
    assert counted[("forwarded_total", ())] == 9
    assert counted[("forward_retries_total", ())] == 2
    assert counted[("forward_spilled_total", ())] == 2
    assert counted[("outbox_depth", ())] == 0


def test_feedback_rejections_and_explainer_rows():
    metrics = ModelMetrics(CLASSES)
    metrics.observe_feedback(0.0, 3)
    metrics.observe_feedback(1.0, 1)
    metrics.reject("wrong_width")
    metrics.observe_explainer(100)
    counted = samples(metrics.registry, "glassbox_model_")
    assert counted[("feedback_total", (("reward", "0"),))] == 3
    assert counted[("feedback_total", (("reward", "1"),))] == 1
    assert counted[("input_rejections_total", (("reason", "wrong_width"),))] == 1
    assert counted[("explainer_rows_total", ())] == 100


def test_exposition_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (apt-get install prometheus)")
    metrics = ModelMetrics(CLASSES)
    metrics.observe(Certainty.of(two_class([0.9, 0.6])))
    metrics.observe_feedback(1.0, 1)
    metrics.reject("wrong_width")
    metrics.report(ForwardStats(forwarded=1), force=True)
    text = generate_latest(metrics.registry).decode()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), text


STALE_COUNTER = """
from prometheus_client import Counter
Counter("glassbox_model_predictions", "stale", ["predicted_class"]).labels(predicted_class="<=50K").inc(1e6)
"""


@pytest.mark.slow
def test_the_configured_metrics_dir_is_emptied_at_start_and_shared_by_the_pods_processes(
    model_service_factory, adult_test_rows, tmp_path
):
    """``PROMETHEUS_MULTIPROC_DIR`` with an earlier run's file in it: the microservice starts from 0,
    and its processes (REST workers, the gRPC server) write their files there."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    subprocess.run(
        [sys.executable, "-c", STALE_COUNTER], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        check=True,
    )  # fmt: skip
    stale = {p.name for p in directory.glob("*.db")}
    assert stale
    model = model_service_factory(env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}, workers=2)
    answer = model.predict({"data": {"ndarray": adult_test_rows[:3].tolist()}})
    assert answer.status_code == 200, answer.text
    samples = model.metric_samples()
    assert sum(v for k, v in samples.items() if k.startswith("glassbox_model_predictions_total")) == 3
    files = {p.name for p in directory.glob("*.db")}
    assert not files & stale
    pids = {name.rsplit("_", 1)[1] for name in files}
    assert len(pids) >= 2, files  # the gRPC server and the REST worker(s) loaded so far


def test_default_metrics_dirs_of_gone_processes_are_removed_at_start(tmp_path):
    """Without ``PROMETHEUS_MULTIPROC_DIR``: a directory per main process under the temp dir; those of
    processes killed before their ``atexit`` ran are removed by the next start, a live one's kept."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan, live = (
        tmp_path / f"glassbox-prometheus-{gone.stdout.strip()}",
        tmp_path / f"glassbox-prometheus-{os.getpid()}",
    )
    for directory in (orphan, live):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    started = subprocess.run(
        [sys.executable, "-c", "from glassbox.seldon import prometheus; print(prometheus.prepare())"],
        env={**env, "TMPDIR": str(tmp_path)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert started.stdout.strip().startswith(str(tmp_path / "glassbox-prometheus-"))
    assert not orphan.exists() and (live / "counter_1.db").exists()
    assert {p.name for p in tmp_path.iterdir()} == {live.name}  # and its own was removed at its exit
