"""The monitor's place in the local stack, without starting it: the env `up` gives the monitor and the
model, and the Prometheus config that loads the chart's rules file (promtool checks both)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from glassbox.monitor.settings import MonitorSettings
from glassbox.serving.settings import ModelSettings
from glassbox.stack import components
from glassbox.stack.prometheus import RULES, write_scrape_config
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import Stack


def test_monitor_env_names_are_its_settings_and_point_at_the_queue(tmp_path):
    settings = StackSettings(run_dir=tmp_path, monitor_window_rows=250, monitor_window_seconds=30)
    monitor = components.monitor(settings, 8600, "http://127.0.0.1:8500")
    env = monitor.process.env
    assert {n for n in env} <= {f"GLASSBOX_MONITOR_{f.upper()}" for f in MonitorSettings.model_fields}
    assert env["GLASSBOX_MONITOR_QUEUE_URL"] == "http://127.0.0.1:8500"
    assert env["GLASSBOX_MONITOR_QUEUE_API_KEY"] == settings.queue_api_key
    assert (env["GLASSBOX_MONITOR_WINDOW_ROWS"], env["GLASSBOX_MONITOR_WINDOW_SECONDS"]) == ("250", "30")
    assert monitor.process.health_url == "http://127.0.0.1:8600/health/ready"
    assert (monitor.scrape.metrics_path, monitor.scrape.pod) == ("/metrics", "glassbox-monitor")
    assert components.ORDER.index("monitor") < components.ORDER.index("model")  # `down` stops it after


def test_the_model_forwards_to_the_monitor_only_when_there_is_one(tmp_path):
    settings = StackSettings(run_dir=tmp_path, monitor_sample=0.5)
    fields = {f"GLASSBOX_MODEL_{f.upper()}" for f in ModelSettings.model_fields}
    with_monitor = components.model(settings, "http://q", "http://127.0.0.1:8600").process.env
    assert with_monitor["GLASSBOX_MODEL_MONITOR_URL"] == "http://127.0.0.1:8600"
    assert with_monitor["GLASSBOX_MODEL_MONITOR_SAMPLE"] == "0.5"
    assert {n for n in with_monitor if n.startswith("GLASSBOX_MODEL_")} <= fields
    without = components.model(settings, "http://q").process.env
    assert not [n for n in without if n.startswith("GLASSBOX_MODEL_MONITOR")]


def test_promtool_accepts_the_config_with_the_charts_rules(tmp_path, prometheus_bin):
    targets = [components.monitor(StackSettings(run_dir=tmp_path), 8600, "").scrape]
    path = write_scrape_config(tmp_path / "prometheus.yml", targets, "default", rule_files=[RULES])
    assert yaml.safe_load(path.read_text())["rule_files"] == [str(RULES)]
    result = subprocess.run(
        [shutil.which("promtool"), "check", "config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout + result.stderr


def test_a_model_trained_before_monitoring_runs_without_the_monitor_and_says_why(tmp_path):
    version = tmp_path / "model" / "20250101T000000Z"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text("{}")
    (tmp_path / "model" / "LATEST").write_text(version.name)
    stack = Stack(StackSettings(run_dir=tmp_path / "run", artifacts=tmp_path / "model"))
    assert stack.model_has_detectors() is False
    (note,) = stack.notes
    assert "has no detectors.npz" in note and "retrain" in note and "without the monitor" in note
    (version / "detectors.npz").write_bytes(b"")
    assert stack.model_has_detectors() is True and len(stack.notes) == 1
