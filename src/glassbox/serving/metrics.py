"""The model component's own metrics, recorded with prometheus-client (docs/contracts.md, "Metrics").

They reach Prometheus through Seldon's metrics port at ``/prometheus`` (``glassbox.seldon.prometheus``:
multiprocess files, summed over the pod's processes, with Seldon's deployment labels). Recording is a
few memory-mapped increments per request, so it happens on every request; only the forwarder's running
totals are copied in, by :meth:`ModelMetrics.report`.

The certainty (max class probability of a user row) is a real histogram with buckets between 0.5 and
1, filled per request from numpy bucket counts (:class:`BatchHistogram`), not one Python call per row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from glassbox.contract.labels import Certainty
from glassbox.serving.forwarder import ForwardStats

PREFIX = "glassbox_model_"
CERTAINTY_BUCKETS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
FORWARD_COUNTERS = {  # ForwardStats field -> (metric name without _total, help)
    "forwarded": ("forwarded", "Records the review queue accepted (created or already there)"),
    "retries": ("forward_retries", "Records re-sent from the outbox after an earlier failure"),
    "spilled": ("forward_spilled", "Records written to the outbox because the queue could not take them"),
    "dropped": ("forward_dropped", "Records lost because the outbox was full or unwritable"),
    "rejected": ("forward_rejected", "Records the queue refused as invalid (logged with the reason)"),
}
MONITOR_COUNTERS = {  # the same totals of the sender to the drift/outlier monitor (one record per request)
    "forwarded": ("monitor_forwarded", "Request records the monitor accepted"),
    "retries": ("monitor_forward_retries", "Request records re-sent to the monitor from its outbox"),
    "spilled": ("monitor_forward_spilled", "Request records written to the monitor outbox"),
    "dropped": ("monitor_forward_dropped", "Request records for the monitor lost (its outbox full)"),
    "rejected": ("monitor_forward_rejected", "Request records the monitor refused (logged with the reason)"),
}


class BatchHistogram(Histogram):
    """A prometheus-client ``Histogram`` that also takes many observations at once."""

    def observe_counts(self, counts: Sequence[int], total: float) -> None:
        """Add ``counts[i]`` observations to bucket ``i`` (non-cumulative, ``+Inf`` last) and ``total`` to
        the sum: the same series as calling ``observe`` once per value.

        Uses ``Histogram``'s own per-bucket values (``_buckets``, ``_sum``; prometheus-client 0.26);
        ``tests/serving/test_metrics.py`` checks the result equals ``observe``'s.
        """
        self._raise_if_not_observable()
        if len(counts) != len(self._upper_bounds):
            raise ValueError(f"{len(counts)} bucket counts for {len(self._upper_bounds)} buckets")
        self._sum.inc(total)
        for bucket, n in zip(self._buckets, counts, strict=True):
            if n:
                bucket.inc(n)


class ModelMetrics:
    """The model's metrics in ``registry`` (a fresh one by default: several can live in one process)."""

    def __init__(
        self,
        class_names: tuple[str, ...],
        report_interval: float = 0.0,
        registry: CollectorRegistry | None = None,
    ):
        self.class_names = class_names
        self.report_interval = report_interval
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        predictions = Counter(
            PREFIX + "predictions", "User rows answered, by predicted class", ["predicted_class"], registry=r
        )
        # Every class's series exists from the start, at 0: a dashboard sees it before the first row.
        self._per_class = [predictions.labels(predicted_class=name) for name in class_names]
        self._certainty = BatchHistogram(
            PREFIX + "certainty",
            "Max class probability of each user row (explainer traffic excluded)",
            buckets=CERTAINTY_BUCKETS,
            registry=r,
        )
        self._bounds = np.array(self._certainty._upper_bounds)  # CERTAINTY_BUCKETS and +Inf
        self._explainer_rows = Counter(
            PREFIX + "explainer_rows", "Rows predicted for the explainer (not user traffic)", registry=r
        )
        self._rejections = Counter(
            PREFIX + "input_rejections", "Refused requests, by reason", ["reason"], registry=r
        )
        self._feedback = Counter(
            PREFIX + "feedback",
            "Feedback rows received, by reward (0 too, unlike Seldon)",
            ["reward"],
            registry=r,
        )
        self._forward = {
            field: Counter(PREFIX + name, text, registry=r)
            for field, (name, text) in FORWARD_COUNTERS.items()
        }
        # Every process reports the same shared SQLite outbox: the latest reading is the depth.
        self._outbox_depth = Gauge(
            PREFIX + "outbox_depth",
            "Records waiting in the outbox",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self._monitor = {
            field: Counter(PREFIX + name, text, registry=r)
            for field, (name, text) in MONITOR_COUNTERS.items()
        }
        self._monitor_outbox_depth = Gauge(
            PREFIX + "monitor_outbox_depth",
            "Request records waiting in the monitor outbox",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self._lock = threading.Lock()
        self._last_report = float("-inf")
        self._forward_seen = ForwardStats()
        self._monitor_seen = ForwardStats()

    def observe(self, certainty: Certainty) -> None:
        """Count one request's rows of user traffic (vectorised: no per-row Python)."""
        predicted = np.bincount(certainty.predicted, minlength=len(self.class_names)).tolist()
        bucket = np.searchsorted(self._bounds, certainty.max_probability, side="left")  # first bound >= p
        counts = np.bincount(np.minimum(bucket, len(self._bounds) - 1), minlength=len(self._bounds))
        for child, n in zip(self._per_class, predicted, strict=True):
            if n:
                child.inc(n)
        self._certainty.observe_counts(counts.tolist(), float(certainty.max_probability.sum()))

    def observe_explainer(self, rows: int) -> None:
        self._explainer_rows.inc(rows)

    def reject(self, reason: str) -> None:
        self._rejections.labels(reason=reason).inc()

    def observe_feedback(self, reward: float, rows: int) -> None:
        """Count feedback rows by reward: Seldon 1.19's own counters skip reward 0 (``update_reward``),
        so ``glassbox_model_feedback_total{reward="1"} / sum(glassbox_model_feedback_total)`` is the
        model-side live accuracy."""
        self._feedback.labels(reward=f"{reward:g}").inc(rows)

    def report(
        self, forward: ForwardStats | None = None, force: bool = False, monitor: ForwardStats | None = None
    ) -> None:
        """Copy the forwarder's running totals into the counters (and the outbox depth into the gauge).

        The forwarder counts in its own thread; this runs with requests and health checks, at most once
        per ``report_interval`` unless ``force``.
        """
        if forward is None and monitor is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_report < self.report_interval:
                return
            self._last_report = now
            if forward is not None:
                _copy(forward, self._forward_seen, self._forward)
                self._outbox_depth.set(forward.outbox_depth)
            if monitor is not None:
                _copy(monitor, self._monitor_seen, self._monitor)
                self._monitor_outbox_depth.set(monitor.outbox_depth)


def _copy(totals: ForwardStats, seen: ForwardStats, counters: dict[str, Counter]) -> None:
    """Add what ``totals`` gained since ``seen`` to ``counters``; remember the new totals."""
    for field, counter in counters.items():
        total = getattr(totals, field)
        if delta := total - getattr(seen, field):
            counter.inc(delta)
        setattr(seen, field, total)
