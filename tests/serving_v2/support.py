"""Helpers of the V2 tests: MLServer processes (``glassbox serve-v2`` from ``.venv-v2``) on free loopback
ports, and tritonclient calls run in that virtualenv (``triton_calls.py``)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO
from glassbox.stack.process import ManagedProcess, free_port

V2_BIN = REPO / ".venv-v2/bin"
TRITON_CALLS = Path(__file__).with_name("triton_calls.py")
MAX_ROWS = 50  # small, so that "too many rows" is cheap to send
MODEL = "loanclassifier"
EXPLAINER = "loanclassifier-explainer"


@dataclass
class V2Server:
    """A running ``mlserver start`` serving one Glassbox runtime."""

    process: ManagedProcess
    name: str
    http: int
    grpc: int
    metrics: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.name}/infer"

    def metric_samples(self, prefix: str = "glassbox_") -> dict[str, float]:
        """``name{label="v",...}`` -> value for every sample whose name starts with ``prefix``."""
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10).text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith(prefix):
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                    samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


def start_v2_server(
    v2_bin: Path,
    component: str,
    artifacts: Path,
    workdir: Path,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> V2Server:
    """``glassbox serve-v2 --component ...`` on free loopback ports; returns when the model is ready."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    name = MODEL if component == "model" else EXPLAINER
    argv = [
        str(v2_bin / "glassbox"), "serve-v2", "--component", component, "--artifacts", str(artifacts),
        "--name", name, "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--run-dir", str(workdir / "run"), *extra_args,
    ]  # fmt: skip
    process = ManagedProcess(
        f"v2-{component}",
        argv,
        workdir / f"{component}.log",
        env={"GLASSBOX_MODEL_OUTBOX_DIR": str(workdir / "outbox"), **(env or {})},
        health_url=f"http://127.0.0.1:{http}/v2/models/{name}/ready",
        ready_ports=(grpc, metrics),
        cwd=str(workdir),
    )
    process.start(timeout=120)
    return V2Server(process, name, http, grpc, metrics, workdir)


def triton(v2_bin: Path, calls: list[dict]) -> list[dict]:
    """Run tritonclient ``calls`` (see ``triton_calls.py``) in the V2 virtualenv; their results."""
    done = subprocess.run(
        [str(v2_bin / "python"), str(TRITON_CALLS)],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert len(results) == len(calls)
    return results


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def forwarding_env(queue) -> dict[str, str]:
    """Forward to ``queue`` (a started ``QueueService``), retrying fast after an outage."""
    return {
        "GLASSBOX_MODEL_QUEUE_URL": queue.url,
        "GLASSBOX_MODEL_QUEUE_API_KEY": queue.api_key,
        "GLASSBOX_MODEL_RETRY_INITIAL_SECONDS": "0.2",
        "GLASSBOX_MODEL_RETRY_MAX_SECONDS": "1",
    }
