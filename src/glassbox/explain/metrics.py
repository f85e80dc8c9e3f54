"""The explainer's metrics as Seldon custom metrics (docs/contracts.md, "Metrics").

Seldon's wrapper exposes what a component returns in ``SeldonResponse.metrics`` on its metrics port
(``/prometheus``), merged across gunicorn workers. It knows counters, gauges and TIMER histograms (in
milliseconds, with fixed buckets from 1 ms to 30 s). Precision and coverage lie in [0, 1] and are
recorded through TIMER as value x 1000, so they land in those buckets unchanged. Model calls and rows
per explanation exceed the top bucket (30), so they are counters (``*_total``) divided by
``glassbox_explainer_explanations_total`` on the dashboard.

Events are buffered (explanations finish on a job thread) and drained into the next response.
"""

from __future__ import annotations

import threading
from typing import Any

PREFIX = "glassbox_explainer_"


class ExplainerMetrics:
    """Thread-safe buffer of Seldon metric dicts."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def explained(self, seconds: float, calls: int, rows: int, precision: float, coverage: float) -> None:
        self._add(
            _timer("latency_seconds", seconds),
            _timer("precision", precision),
            _timer("coverage", coverage),
            _counter("explanations_total", 1),
            _counter("remote_calls_total", calls),
            _counter("remote_rows_total", rows),
        )

    def cache(self, hits: int, misses: int) -> None:
        if hits:
            self._add(_counter("cache_hits_total", hits))
        if misses:
            self._add(_counter("cache_misses_total", misses))

    def failed(self, reason: str) -> None:
        self._add(_counter("failures_total", 1, reason=reason))

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            drained, self._pending = self._pending, []
        return drained

    def _add(self, *metrics: dict[str, Any]) -> None:
        with self._lock:
            self._pending.extend(metrics)


def _timer(name: str, value: float) -> dict[str, Any]:
    # Seldon divides TIMER values by 1000 (milliseconds -> seconds); multiply to keep the unit.
    return {"type": "TIMER", "key": PREFIX + name, "value": float(value) * 1000}


def _counter(name: str, value: float, **tags: str) -> dict[str, Any]:
    metric: dict[str, Any] = {"type": "COUNTER", "key": PREFIX + name, "value": float(value)}
    if tags:
        metric["tags"] = tags
    return metric
