"""The monitor's Prometheus metrics (docs/contracts.md, "Metrics"); one process, one registry.

Drift gauges carry ``feature`` and ``window`` ("count" | "time") and hold the last completed window's
result; they appear once that window has been tested. The outlier score is the squared Mahalanobis
distance divided by the training threshold, so the buckets mean the same for every model version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from glassbox.monitor.drift import WindowResult

PREFIX = "glassbox_monitor_"
WINDOWS = ("count", "time")
SCORE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 100.0)


class MonitorMetrics:
    def __init__(self, feature_names: Sequence[str], registry: CollectorRegistry | None = None):
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.feature_names = tuple(feature_names)
        self.rows = Counter(
            PREFIX + "rows", "Rows accepted (each once, however often it was sent)", registry=r
        )
        self.rejected = Counter(
            PREFIX + "rejected", "Bodies or records refused, by reason", ["reason"], registry=r
        )
        self.p_value = Gauge(
            PREFIX + "drift_p_value",
            "Raw p-value of the last completed window's drift test (KS numeric, chi-squared categorical)",
            ["feature", "window"],
            registry=r,
        )
        self.drift = Gauge(
            PREFIX + "drift",
            "1 if the last completed window flags the feature after the multiple-testing correction",
            ["feature", "window"],
            registry=r,
        )
        self.class_mix_p_value = Gauge(
            PREFIX + "class_mix_p_value",
            "p-value of the last completed window's predicted-class mix against the held-out predictions",
            ["window"],
            registry=r,
        )
        self.class_mix_drift = Gauge(
            PREFIX + "class_mix_drift",
            "1 if the last completed window's predicted-class mix differs at the configured level",
            ["window"],
            registry=r,
        )
        self.outliers = Counter(PREFIX + "outliers", "Rows scoring above the outlier threshold", registry=r)
        self.outlier_score = Histogram(
            PREFIX + "outlier_score",
            "Outlier score of each row: squared Mahalanobis distance / training threshold (> 1: outlier)",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.outliers_queued = Counter(
            PREFIX + "outliers_queued",
            "Outlier records the review queue accepted (created or existing)",
            registry=r,
        )
        self.window_rows = Gauge(PREFIX + "window_rows", "Rows in the open window", ["window"], registry=r)
        self.window_capacity = Gauge(
            PREFIX + "window_capacity",
            "Rows that fill a count window; most rows a time window keeps",
            ["window"],
            registry=r,
        )
        self.windows = Counter(PREFIX + "windows", "Windows completed and tested", ["window"], registry=r)
        self.duplicates = Counter(
            PREFIX + "duplicate_records",
            "Records received again (at-least-once delivery) and skipped",
            registry=r,
        )
        for window in WINDOWS:  # present from the start, at 0
            self.windows.labels(window=window)
            self.window_rows.labels(window=window)

    def publish(self, window: str, result: WindowResult) -> None:
        self.windows.labels(window=window).inc()
        for name in self.feature_names:
            self.p_value.labels(feature=name, window=window).set(result.p_values[name])
            self.drift.labels(feature=name, window=window).set(1.0 if result.drift[name] else 0.0)
        self.class_mix_p_value.labels(window=window).set(result.class_mix_p_value)
        self.class_mix_drift.labels(window=window).set(1.0 if result.class_mix_drift else 0.0)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, from one numpy bucket count (no per-row Python).

    Uses ``Histogram``'s per-bucket values (``_upper_bounds``, ``_buckets``, ``_sum``; prometheus-client
    0.26, pinned), as the model's ``BatchHistogram`` does; tests/monitor check it equals ``observe``.
    """
    if not len(values):
        return
    bounds = np.asarray(histogram._upper_bounds)  # the buckets and +Inf
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(np.sum(values)))
    for bucket, n in zip(histogram._buckets, counts.tolist(), strict=True):
        if n:
            bucket.inc(n)
