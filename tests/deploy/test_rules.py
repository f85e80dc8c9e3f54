"""The monitor's alerting rules through the real promtool: `check rules`, and `test rules` with series
that must fire each alert and series that must not. A weakened copy of the rules must fail the same
unit tests, so they can catch a change that breaks an alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import require

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts/glassbox/rules/glassbox.rules.yaml"
RULE_TESTS = Path(__file__).parent / "rules/monitor-rules.test.yaml"

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    require(path, "promtool (apt-get install prometheus)")
    return path


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60)


def alert_names(rules: dict) -> set[str]:
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}


def test_promtool_checks_the_rules(promtool):
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool):
    result = run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    expected = alert_names(yaml.safe_load(RULES.read_text()))
    assert expected == {
        "GlassboxFeatureDrift",
        "GlassboxClassMixDrift",
        "GlassboxHighOutlierRate",
        "GlassboxMonitorRejectingRows",
    }
    assert fired == expected and silent == expected


@pytest.mark.parametrize(
    ("original", "weakened"),
    [
        ("== 1\n        for: 5m", "== 1\n        for: 0m"),  # drift: a single flagged sample fires
        (") > 0.05", ") > 0.5"),  # outliers: 10 % no longer alerts
        (">= 200", ">= 0"),  # outliers: a trickle of rows alerts
        ("max by (namespace, feature)", "max by (namespace, feature, window)"),  # one alert per window
    ],
)
def test_a_weakened_rule_fails_the_unit_tests(promtool, tmp_path, original, weakened):
    text = RULES.read_text()
    assert original in text
    (tmp_path / "glassbox.rules.yaml").write_text(text.replace(original, weakened, 1))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = ["glassbox.rules.yaml"]
    (tmp_path / "rules.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert run(promtool, "check", "rules", tmp_path / "glassbox.rules.yaml").returncode == 0
    result = run(promtool, "test", "rules", tmp_path / "rules.test.yaml")
    assert result.returncode != 0, f"{weakened!r} still passes:\n{result.stdout}"
