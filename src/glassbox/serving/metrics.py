"""The component's own metrics, handed to Seldon's wrapper as custom-metric dicts.

Seldon 1.19 exposes a worker's custom metrics on its metrics port at ``/prometheus`` (shared memory
across gunicorn workers, a ``worker_id`` label per worker). It knows three kinds: COUNTER (exposed
as ``<key>_total``), GAUGE, and TIMER (milliseconds, exposed as a histogram in seconds with fixed
log-spaced buckets from 1 ms to 30 s). A histogram of probabilities in [0.5, 1] would get about four
useful buckets out of TIMER, and each TIMER value is one observation (100 rows, 100 dicts), so the
certainty histogram is published as cumulative counters with an ``le`` label instead:
``glassbox_model_certainty_bucket_total{le="0.7"}`` — ``histogram_quantile`` accepts them as is.

Values accumulate here between reports and leave as deltas, because Seldon adds COUNTER values up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np

from glassbox.contract.labels import Certainty
from glassbox.serving.forwarder import ForwardStats

PREFIX = "glassbox_model_"
CERTAINTY_BUCKETS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
FORWARD_COUNTERS = {  # ForwardStats field -> metric key (exposed with _total)
    "forwarded": "forwarded",
    "retries": "forward_retries",
    "spilled": "forward_spilled",
    "dropped": "forward_dropped",
    "rejected": "forward_rejected",
}


def _counter(key: str, value: float, **tags: str) -> dict:
    metric = {"type": "COUNTER", "key": PREFIX + key, "value": value}
    if tags:
        metric["tags"] = tags
    return metric


class ModelMetrics:
    """Thread-safe accumulator; ``report`` drains everything since the last report."""

    def __init__(self, class_names: tuple[str, ...], report_interval: float = 0.0):
        self.class_names = class_names
        self.report_interval = report_interval
        self._last_report = float("-inf")
        self._buckets = np.array(CERTAINTY_BUCKETS)
        self._lock = threading.Lock()
        self._first_report = True  # report every series once at zero so dashboards see them at once
        self._reset()
        self._forward_seen = ForwardStats()

    def _reset(self) -> None:
        self._predictions = np.zeros(len(self.class_names), dtype=np.int64)
        self._bucket_counts = np.zeros(len(self._buckets) + 1, dtype=np.int64)  # last: above every bucket
        self._certainty_sum = 0.0
        self._rejections: Counter[str] = Counter()
        self._feedback: Counter[str] = Counter()
        self._explainer_rows = 0

    def observe(self, certainty: Certainty) -> None:
        """Count one request's rows of user traffic (vectorised: no per-row Python)."""
        predicted = np.bincount(certainty.predicted, minlength=len(self.class_names))
        buckets = np.bincount(
            np.searchsorted(self._buckets, certainty.max_probability, side="left"),
            minlength=len(self._buckets) + 1,
        )
        total = float(certainty.max_probability.sum())
        with self._lock:
            self._predictions += predicted
            self._bucket_counts += buckets
            self._certainty_sum += total

    def observe_explainer(self, rows: int) -> None:
        with self._lock:
            self._explainer_rows += rows

    def reject(self, reason: str) -> None:
        with self._lock:
            self._rejections[reason] += 1

    def observe_feedback(self, reward: float, rows: int) -> None:
        """Count feedback rows by reward: Seldon 1.19's own counters skip reward 0 (``update_reward``),
        so ``glassbox_model_feedback_total{reward="1"} / sum(glassbox_model_feedback_total)`` is the
        model-side live accuracy."""
        with self._lock:
            self._feedback[f"{reward:g}"] += rows

    def report(self, forward: ForwardStats | None = None, force: bool = False) -> list[dict]:
        """Seldon custom-metric dicts for everything since the last report.

        Unless ``force``, at most one report per ``report_interval``: every dict costs Seldon a
        shared-memory update, so a busy worker batches its counts instead of sending them per request.
        """
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_report < self.report_interval:
                return []
            self._last_report = now
            predictions, buckets = self._predictions, self._bucket_counts
            certainty_sum, rejections, explainer = self._certainty_sum, self._rejections, self._explainer_rows
            feedback = self._feedback
            first = self._first_report
            self._first_report = False
            self._reset()
            forward_delta = self._forward_delta(forward) if forward else {}
        metrics = []
        for name, n in zip(self.class_names, predictions.tolist(), strict=True):
            if n or first:
                metrics.append(_counter("predictions", n, predicted_class=name))
        count = int(buckets.sum())
        if count or first:
            cumulative = np.cumsum(buckets).tolist()
            for le, n in zip(CERTAINTY_BUCKETS, cumulative, strict=False):
                metrics.append(_counter("certainty_bucket", n, le=f"{le:g}"))
            metrics.append(_counter("certainty_bucket", count, le="+Inf"))
            metrics.append(_counter("certainty_count", count))
            metrics.append(_counter("certainty_sum", certainty_sum))
        metrics += [_counter("input_rejections", n, reason=reason) for reason, n in rejections.items()]
        metrics += [_counter("feedback", n, reward=reward) for reward, n in feedback.items()]
        if explainer or first:
            metrics.append(_counter("explainer_rows", explainer))
        for key, n in forward_delta.items():
            if n or first:
                metrics.append(_counter(key, n))
        if forward is not None:
            metrics.append({"type": "GAUGE", "key": PREFIX + "outbox_depth", "value": forward.outbox_depth})
        return metrics

    def _forward_delta(self, forward: ForwardStats) -> dict[str, int]:
        delta = {}
        for field, key in FORWARD_COUNTERS.items():
            now = getattr(forward, field)
            delta[key] = now - getattr(self._forward_seen, field)
            setattr(self._forward_seen, field, now)
        return delta
