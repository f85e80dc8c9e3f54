"""Fixtures of the monitor's tests: real ``glassbox monitor serve`` processes and the held-out rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, venv_bin

ADULT_CONFIG = Path(__file__).resolve().parents[2] / "pipeline" / "configs" / "adult.yaml"


class MonitorService:
    """A running monitor and the calls the tests make to it."""

    def __init__(self, process: ManagedProcess, port: int):
        self.process, self.port = process, port
        self.url = f"http://{LOOPBACK}:{port}"

    def post(self, body: bytes | str | dict, **headers: str) -> requests.Response:
        data = json.dumps(body) if isinstance(body, dict) else body
        return requests.post(
            f"{self.url}/api/v1/rows",
            data=data,
            headers={"Content-Type": "application/json", **headers},
            timeout=60,
        )

    def status(self) -> dict:
        answer = requests.get(f"{self.url}/api/v1/status", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def metrics_text(self) -> str:
        return requests.get(f"{self.url}/metrics", timeout=10).text

    def samples(self) -> dict[str, float]:
        """``glassbox_monitor_*`` samples keyed ``name{labels}`` (labels sorted)."""
        from prometheus_client.parser import text_string_to_metric_families

        found = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return found


def start_monitor(
    artifacts: Path, workdir: Path, port: int | None = None, **env: str
) -> tuple[ManagedProcess, int]:
    port = port or free_port()
    process = ManagedProcess(
        "monitor",
        [venv_bin("glassbox"), "monitor", "serve", "--host", LOOPBACK, "--port", str(port)],
        workdir / f"monitor-{port}.log",
        env={"GLASSBOX_MONITOR_ARTIFACTS": str(artifacts), **env},
        health_url=f"http://{LOOPBACK}:{port}/health/ready",
    )
    return process, port


@pytest.fixture
def monitor_factory(trained_artifacts, tmp_path, processes) -> Callable[..., MonitorService]:
    """``start(port=None, **GLASSBOX_MONITOR_* env)`` -> a started ``MonitorService`` (stopped after)."""

    def start(port: int | None = None, **env: str) -> MonitorService:
        process, port = start_monitor(trained_artifacts, tmp_path, port, **env)
        processes.append(process)
        process.start(timeout=60)
        return MonitorService(process, port)

    return start


@pytest.fixture(scope="module")
def shared_monitor(trained_artifacts, tmp_path_factory) -> Iterator[MonitorService]:
    """One monitor for a module: count windows of 100 rows, no queue."""
    process, port = start_monitor(
        trained_artifacts, tmp_path_factory.mktemp("monitor"), GLASSBOX_MONITOR_WINDOW_ROWS="100"
    )
    process.start(timeout=60)
    yield MonitorService(process, port)
    process.stop()


@pytest.fixture(scope="session")
def heldout_rows() -> np.ndarray:
    """Every row of the default config's held-out test split (2,560), in alibi's encoding."""
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset
    from glassbox.pipeline.split import split_rows

    config = load_config(ADULT_CONFIG)
    data = load_dataset(config)
    return data.X[split_rows(data, config.split).test]


@pytest.fixture(scope="session")
def monitored_bundle(trained_artifacts):
    from glassbox.pipeline.artifacts import load_bundle

    return load_bundle(trained_artifacts)


def rows_body(bundle, X: np.ndarray, prefix: str, per_request: int = 100, version: str | None = None) -> str:
    """What the model's forwarder posts for ``X`` sent as requests of ``per_request`` rows."""
    from glassbox.contract.labels import Certainty
    from glassbox.contract.monitoring import MonitorRowsBuilder
    from glassbox.contract.records import UncertainRows

    builder = MonitorRowsBuilder(bundle.manifest.name, version or bundle.manifest.version)
    P = bundle.predict_proba(X)
    texts = []
    for start in range(0, len(X), per_request):
        part = slice(start, start + per_request)
        rows = np.arange(len(X[part]))
        item = UncertainRows.select(
            f"{prefix}-{start}", rows, X[part], P[part], Certainty.of(P[part]), time.time()
        )
        texts += [text for _, text in builder.build(item)]
    return '{"records": [' + ", ".join(texts) + "]}"


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
