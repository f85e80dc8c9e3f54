"""Load generation against a local stack, shared by `make soak` and `make chaos`.

Threads with pooled ``requests`` sessions post through the gateway until a deadline or a request
budget is reached (always bounded), recording each call's latency, status and error text. Memory is
the resident set summed over each component's process group (gunicorn workers included).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import requests

from glassbox.stack.demo import ensure_trained
from glassbox.stack.process import process_group_members
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import Stack
from glassbox.stack.traffic import Rows, load_rows

REPO = Path(__file__).resolve().parents[1]


def start_stack(**overrides) -> Stack:
    """A fresh stack in a temporary run dir on free ports, over the repo's trained model."""
    base = StackSettings(
        artifacts=Path(os.environ.get("GLASSBOX_STACK_ARTIFACTS", REPO / "artifacts/loanclassifier")),
        train_config=REPO / "pipeline/configs/adult.yaml",
    )
    ensure_trained(base)
    run_dir = Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
    settings = base.model_copy(update={"run_dir": run_dir, "gateway_port": 0, **overrides})
    return Stack(settings).up()


def demo_rows(stack: Stack, n: int = 2000) -> Rows:
    return load_rows(stack.settings.train_config, n, seed=1)


@dataclass
class Calls:
    """Every call of one kind: latency, status, first error texts."""

    latencies: list[float] = field(default_factory=list)
    finished_at: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, status)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    uncertain_rows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, status: int | str, error: str | None = None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.finished_at.append((time.monotonic(), str(status)))
            self.statuses[str(status)] += 1
            if error:
                self.errors[error[:200]] += 1

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)


class Load:
    """Concurrent posting of rows to one gateway path until ``stop`` or the budget runs out."""

    def __init__(
        self, url: str, rows: Rows, threads: int, batch: int = 1, budget: int = 10**6, threshold: float = 0.7
    ):
        self.url, self.rows, self.threads, self.batch, self.threshold = url, rows, threads, batch, threshold
        self.calls = Calls()
        self.stop = threading.Event()
        self._budget = budget
        self._counter = 0
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _next(self) -> int | None:
        with self._lock:
            if self._counter >= self._budget:
                return None
            self._counter += 1
            return self._counter

    def _run(self, seed: int) -> None:
        session = requests.Session()
        rng = np.random.default_rng(seed)
        while not self.stop.is_set() and self._next() is not None:
            pick = rng.integers(0, len(self.rows.X), size=self.batch)
            body = {"data": {"names": self.rows.feature_names, "ndarray": self.rows.X[pick].tolist()}}
            started = time.perf_counter()
            try:
                reply = session.post(self.url, json=body, timeout=120)
            except requests.RequestException as exc:
                self.calls.add(time.perf_counter() - started, "connection-error", type(exc).__name__)
                continue
            elapsed = time.perf_counter() - started
            if reply.status_code == 200:
                self.calls.add(elapsed, 200)
                probabilities = reply.json().get("data", {}).get("ndarray")
                if probabilities and isinstance(probabilities[0], list):
                    uncertain = int((np.asarray(probabilities).max(axis=1) < self.threshold).sum())
                    with self.calls.lock:
                        self.calls.uncertain_rows += uncertain
            else:
                self.calls.add(elapsed, reply.status_code, error_message(reply))

    def start(self) -> Load:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def join(self, timeout: float | None = None) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout)


def error_message(reply: requests.Response) -> str:
    """The ``status.info`` of a Seldon error answer, else the start of the body."""
    try:
        return str(reply.json()["status"]["info"])
    except (ValueError, KeyError, TypeError):
        return reply.text[:200]


def gateway_url(stack: Stack, kind: str) -> str:
    s = stack.settings
    base = f"http://{stack.gateway_endpoint}/seldon/{s.namespace}"
    if kind == "explain":
        return f"{base}/{s.deployment}-explainer/{s.predictor}/api/v1.0/explain"
    return f"{base}/{s.deployment}/api/v1.0/predictions"


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text endpoint as {metric name: value summed over all its series}."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def rss_mb(stack: Stack) -> dict[str, float]:
    """Resident memory in MB per component, summed over its process group."""
    out = {}
    for name, component in stack.components.items():
        total = 0
        for pid in process_group_members(component.process.pid or 0):
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        out[name] = total / 2**20
    return out
