"""The generated scrape config: promtool accepts it, and a real Prometheus scrapes with PodMonitor labels."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import requests
import yaml

from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port
from glassbox.stack.prometheus import ScrapeTarget, prometheus_process, scrape_config, write_scrape_config


def test_every_target_gets_the_podmonitor_labels():
    config = scrape_config(
        [ScrapeTarget("gateway", 1234, "/metrics", pod="gateway", container="gateway")], "default"
    )
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [
        {
            "targets": ["127.0.0.1:1234"],
            "labels": {"namespace": "default", "pod": "gateway", "container": "gateway"},
        }
    ]


def test_promtool_accepts_the_generated_config(tmp_path, prometheus_bin):
    promtool = shutil.which("promtool")
    targets = [
        ScrapeTarget(
            "seldon-loanclassifier", 9001, "/prometheus", pod="loanclassifier-default", container="classifier"
        ),
        ScrapeTarget("glassbox-queue", 9002, "/metrics", pod="glassbox-queue", container="queue"),
    ]
    path = write_scrape_config(tmp_path / "prometheus.yml", targets, "default")
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(path.read_text())["global"]["scrape_interval"] == "5s"


def test_prometheus_scrapes_a_stack_process_with_namespace_and_pod(tmp_path, prometheus_bin, processes):
    gateway_port, prom_port = free_port(), free_port()
    gateway = ManagedProcess(
        name="gateway",
        argv=[sys.executable, "-m", "uvicorn", "--factory", "glassbox.stack.gateway:create_app",
              "--host", LOOPBACK, "--port", str(gateway_port)],
        log_path=tmp_path / "gateway.log",
        env={"GLASSBOX_STACK_GATEWAY_MODEL_URL": f"http://{LOOPBACK}:{free_port()}"},
        health_url=f"http://{LOOPBACK}:{gateway_port}/healthz",
    )  # fmt: skip
    processes.append(gateway.start(timeout=30))
    # One request to a dead upstream creates the orchestrator-style series.
    requests.post(
        f"http://{LOOPBACK}:{gateway_port}/seldon/default/loanclassifier/api/v1.0/predictions", json={}
    )
    config = write_scrape_config(
        tmp_path / "prometheus.yml",
        [ScrapeTarget("gateway", gateway_port, "/metrics", pod="gateway", container="gateway")],
        "default",
        interval="1s",
    )
    prom = prometheus_process(
        prometheus_bin, config, tmp_path / "tsdb", prom_port, tmp_path / "prometheus.log"
    )
    processes.append(prom.start(timeout=60))
    query = (
        'seldon_api_executor_server_requests_seconds_count{namespace="default", pod="gateway", code="503"}'
    )
    deadline = time.monotonic() + 30
    result = []
    while not result and time.monotonic() < deadline:
        time.sleep(0.5)
        reply = requests.get(f"http://{LOOPBACK}:{prom_port}/api/v1/query", params={"query": query}).json()
        result = reply["data"]["result"]
    assert result, f"no series for {query}; see {tmp_path / 'prometheus.log'}"
    assert result[0]["metric"]["deployment_name"] == "loanclassifier"
    assert result[0]["value"][1] == "1"
