"""The explainer's metrics, recorded with prometheus-client (docs/contracts.md, "Metrics").

They reach Prometheus through Seldon's metrics port at ``/prometheus`` (``glassbox.seldon.prometheus``:
multiprocess files, summed over the pod's processes, with Seldon's deployment labels). An explanation
finished on a job thread is counted at once, not with the next answered request.

The metric objects are created on first use, in the process that records: the recorder itself is built
in Seldon's main process, before the fork and before ``load()`` switches prometheus-client to
multiprocess values.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

PREFIX = "glassbox_explainer_"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PRECISION_BUCKETS = (0.5, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0)
COVERAGE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


class _Families:
    """The prometheus-client metrics, all in one registry."""

    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.latency = Histogram(
            PREFIX + "latency_seconds",
            "Seconds to explain one row (cache misses only)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.precision = Histogram(
            PREFIX + "precision", "Precision of each computed anchor", buckets=PRECISION_BUCKETS, registry=r
        )
        self.coverage = Histogram(
            PREFIX + "coverage", "Coverage of each computed anchor", buckets=COVERAGE_BUCKETS, registry=r
        )
        self.explanations = Counter(PREFIX + "explanations", "Explanations computed", registry=r)
        self.remote_calls = Counter(
            PREFIX + "remote_calls",
            "Calls to the model while explaining (per explanation: / explanations)",
            registry=r,
        )
        self.remote_rows = Counter(
            PREFIX + "remote_rows",
            "Rows sent to the model while explaining (per explanation: / explanations)",
            registry=r,
        )
        self.cache_hits = Counter(
            PREFIX + "cache_hits", "Rows answered from the explanation cache", registry=r
        )
        self.cache_misses = Counter(PREFIX + "cache_misses", "Rows not in the explanation cache", registry=r)
        self.failures = Counter(
            PREFIX + "failures", "Failed or rejected explanation requests, by reason", ["reason"], registry=r
        )
        self.counters = (
            self.explanations,
            self.remote_calls,
            self.remote_rows,
            self.cache_hits,
            self.cache_misses,
            self.failures,
        )


class ExplainerMetrics:
    """Thread-safe recorder; ``registry`` holds its metrics (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._families: _Families | None = None
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    @property
    def families(self) -> _Families:
        if self._families is None:
            with self._lock:
                if self._families is None:
                    self._families = _Families(self.registry)
        return self._families

    def explained(self, seconds: float, calls: int, rows: int, precision: float, coverage: float) -> None:
        f = self.families
        f.latency.observe(seconds)
        f.precision.observe(precision)
        f.coverage.observe(coverage)
        f.explanations.inc()
        f.remote_calls.inc(calls)
        f.remote_rows.inc(rows)

    def cache(self, hits: int, misses: int) -> None:
        if hits:
            self.families.cache_hits.inc(hits)
        if misses:
            self.families.cache_misses.inc(misses)

    def failed(self, reason: str) -> None:
        self.families.failures.labels(reason=reason).inc()

    def drain(self) -> list[dict[str, Any]]:
        """This process's counter increments since the last call, as ``{"key", "value", "tags"}`` dicts
        (``key`` as exposed, with ``_total``). For tests and logs; Prometheus reads the totals."""
        totals = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for counter in self.families.counters
            for family in counter.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        }
        with self._lock:
            seen, self._seen = self._seen, totals
        return [
            {
                "type": "COUNTER",
                "key": name,
                "value": value - seen.get((name, labels), 0.0),
                "tags": dict(labels),
            }
            for (name, labels), value in totals.items()
            if value != seen.get((name, labels), 0.0)
        ]
