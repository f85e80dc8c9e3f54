"""The monitor's core: take the model's sampled rows, score them, queue the outliers, test the windows.

Transport-neutral (``app.py`` is the HTTP side), so tests and the benchmark drive it directly as well
as through a real process. One ``Monitor`` per process: its windows live in memory (run one replica).

Nothing is lost and nothing counts twice: a body's rows are committed to the statistics only after the
review queue has accepted its outliers; when the queue cannot take them the answer is 503 and the
model's forwarder keeps the rows in its outbox and sends them again. Request ids already committed are
remembered (``recent_requests``) and their records skipped when they come again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from glassbox.contract.labels import argmax_like_sklearn
from glassbox.contract.monitoring import MonitorRows, parse_rows_body
from glassbox.contract.schema import FeatureSchema, RejectedInput
from glassbox.monitor.drift import WindowResult, evaluate_window, ks_references
from glassbox.monitor.metrics import WINDOWS, MonitorMetrics, observe_many
from glassbox.monitor.outliers import QueueClient, outlier_records
from glassbox.monitor.settings import MonitorSettings
from glassbox.monitor.windows import Window
from glassbox.pipeline.detectors import Detectors

logger = logging.getLogger(__name__)


class AllRecordsRefused(RejectedInput):
    """Every record of a well-formed body was refused (HTTP 422, naming the first problem)."""

    status_code = 422


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        schema: FeatureSchema,
        model_name: str,
        model_version: str,
        detectors: Detectors,
        queue: QueueClient | None = None,
        clock=time.time,
    ):
        self.settings = settings
        self.schema = schema
        self.model_name, self.model_version = model_name, model_version
        self.detectors = detectors
        self.references = ks_references(detectors)  # the KS tests' prepared training CDFs
        self.queue = queue
        self.clock = clock
        self.metrics = MonitorMetrics(schema.feature_names)
        now = clock()
        width = schema.width
        self.windows = {
            "count": Window("count", settings.window_rows, width, now),
            "time": Window("time", settings.window_time_max_rows, width, now),
        }
        self.last: dict[str, WindowResult | None] = dict.fromkeys(WINDOWS)
        self.completed = dict.fromkeys(WINDOWS, 0)
        self.drifted = dict.fromkeys(WINDOWS, 0)  # completed windows with any flag (features or class mix)
        self.skipped_time_windows = 0
        self.totals = {"rows": 0, "outliers": 0, "outliers_queued": 0, "duplicates": 0, "rejected": 0}
        self._recent: dict[str, None] = {}  # insertion-ordered: the oldest id is dropped first
        self._lock = threading.Lock()
        for kind, window in self.windows.items():
            self.metrics.window_capacity.labels(window=kind).set(window.capacity)

    # --- intake ----------------------------------------------------------------------------------

    def ingest(self, body: bytes | str) -> dict[str, Any]:
        """Take one body from the model's forwarder; raises ``RejectedInput`` (4xx) or
        ``UpstreamUnavailable`` (503: the queue did not take the outliers; nothing was committed)."""
        try:
            parsed = parse_rows_body(body, self.schema, self.model_version, self.settings.max_body_rows)
        except RejectedInput as exc:
            self.reject(exc.reason)
            raise
        for error in parsed.errors:
            self.reject(error.reason)
        if parsed.errors and not parsed.request_ids:
            first = parsed.errors[0]
            raise AllRecordsRefused(
                first.reason,
                f"every record was refused ({len(parsed.errors)}); record {first.index}: {first.message}",
            )
        fresh = self._fresh(parsed)
        duplicates = len(parsed.request_ids) - len(fresh)
        keep = np.isin(parsed.record_of_row, fresh)
        X, P = parsed.X[keep], parsed.probabilities[keep]
        scores, distances, terms, excess = self.detectors.assess(X)
        outlier = scores > 1.0
        queued = self._queue_outliers(parsed, keep, outlier, X, P, scores, distances, terms, excess)
        predicted = argmax_like_sklearn(P) if len(P) else np.zeros(0, dtype=np.intp)
        with self._lock:
            self._commit(X, predicted, scores, outlier, [parsed.request_ids[i] for i in fresh])
            self.totals["outliers_queued"] += queued
            self.totals["duplicates"] += duplicates
        self.metrics.outliers_queued.inc(queued)
        self.metrics.duplicates.inc(duplicates)
        return {
            "accepted": len(X),
            "records": len(fresh),
            "duplicates": duplicates,
            "outliers": int(np.count_nonzero(outlier)),
            "errors": [error.as_json() for error in parsed.errors],
        }

    def reject(self, reason: str) -> None:
        self.metrics.rejected.labels(reason=reason).inc()
        with self._lock:
            self.totals["rejected"] += 1

    def _fresh(self, parsed: MonitorRows) -> list[int]:
        """Indices of the body's records not committed before (nor repeated earlier in the body)."""
        seen: set[str] = set()
        fresh = []
        with self._lock:
            for i, request_id in enumerate(parsed.request_ids):
                if request_id not in self._recent and request_id not in seen:
                    fresh.append(i)
                seen.add(request_id)
        return fresh

    def _queue_outliers(self, parsed, keep, outlier, X, P, scores, distances, terms, excess) -> int:
        if not outlier.any() or self.queue is None:
            return 0
        which = np.flatnonzero(outlier)
        records = outlier_records(
            self.schema,
            self.model_name,
            self.model_version,
            parsed.request_ids,
            parsed.timestamps,
            parsed.record_of_row[keep][which],
            parsed.row_in_request[keep][which],
            X[which],
            P[which],
            scores[which],
            distances[which],
            self.detectors.threshold,
            self.detectors.explain(X[which], terms[which], excess[which]),
        )
        return self.queue.send(records)  # raises UpstreamUnavailable: then nothing is committed

    def _commit(
        self, X: np.ndarray, predicted: np.ndarray, scores: np.ndarray, outlier: np.ndarray, ids: list[str]
    ) -> None:
        n = len(X)
        self.metrics.rows.inc(n)
        self.metrics.outliers.inc(int(np.count_nonzero(outlier)))
        observe_many(self.metrics.outlier_score, scores)
        self.totals["rows"] += n
        self.totals["outliers"] += int(np.count_nonzero(outlier))
        count = self.windows["count"]
        start = 0
        while start < n:  # rows beyond a full count window start the next one
            take = min(count.room(), n - start)
            count.add(X[start : start + take], predicted[start : start + take], outlier[start : start + take])
            start += take
            if count.room() == 0:
                self._close("count", count)
        self.windows["time"].add(X, predicted, outlier)
        for kind, window in self.windows.items():
            self.metrics.window_rows.labels(window=kind).set(window.kept)
        limit = self.settings.recent_requests
        for request_id in ids:
            self._recent[request_id] = None
        while len(self._recent) > limit:
            del self._recent[next(iter(self._recent))]

    # --- windows ---------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Close the time window once its period is over (called every ``tick_seconds``)."""
        now = self.clock() if now is None else now
        with self._lock:
            window = self.windows["time"]
            if now - window.started_at < self.settings.window_seconds:
                return
            if window.kept >= self.settings.window_min_rows:
                self._close("time", window, now)
            else:
                self.skipped_time_windows += window.seen > 0
                window.reset(now)
            self.metrics.window_rows.labels(window="time").set(window.kept)

    def _close(self, kind: str, window: Window, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        X, predicted = window.rows()
        result = evaluate_window(
            self.detectors,
            self.references,
            X,
            predicted,
            window.outliers,
            self.settings.p_value,
            self.settings.correction,
            now,
        )
        result = WindowResult(**{**result.__dict__, "rows": window.seen})
        self.last[kind] = result
        self.completed[kind] += 1
        self.metrics.publish(kind, result)
        flagged = [name for name, hit in result.drift.items() if hit]
        if flagged or result.class_mix_drift:
            self.drifted[kind] += 1
            logger.warning("%s window %d: drift in %s%s", kind, self.completed[kind], flagged,
                           " and the class mix" if result.class_mix_drift else "")  # fmt: skip
        window.reset(now)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            windows = {}
            for kind, window in self.windows.items():
                last = self.last[kind]
                windows[kind] = {
                    "rows": window.kept,
                    "seen": window.seen,
                    "capacity": window.capacity,
                    "started_at": window.started_at,
                    "completed": self.completed[kind],
                    "drifted": self.drifted[kind],
                    "last": last.as_json() if last else None,
                }
            windows["time"]["seconds"] = self.settings.window_seconds
            windows["time"]["skipped"] = self.skipped_time_windows
            return {
                "model_name": self.model_name,
                "model_version": self.model_version,
                "p_value": self.settings.p_value,
                "correction": self.settings.correction,
                "outlier_threshold": self.detectors.threshold,
                "outlier_quantile": self.detectors.quantile,
                "queue": self.queue is not None,
                "totals": dict(self.totals),
                "windows": windows,
            }
