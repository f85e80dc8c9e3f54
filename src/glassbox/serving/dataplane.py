"""The model component's transport-neutral core: validate, predict, meter, forward, take feedback.

``component.LoanClassifier`` adapts Seldon's REST/gRPC wrapper to this; nothing here knows about
Flask or protobuf, so it is tested and benchmarked directly as well as through real processes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.contract.labels import Certainty
from glassbox.contract.monitoring import ROWS_PATH, MonitorRowsBuilder
from glassbox.contract.payload import parse_request, request_meta
from glassbox.contract.records import RecordBuilder, UncertainRows
from glassbox.contract.schema import FeatureSchema, RejectedInput
from glassbox.contract.seldon import FEEDBACK_ID_TAG
from glassbox.serving.feedback import FeedbackLog
from glassbox.serving.forwarder import Forwarder
from glassbox.serving.metrics import ModelMetrics
from glassbox.serving.outbox import Outbox
from glassbox.serving.settings import ModelSettings

logger = logging.getLogger(__name__)

MONITOR_OUTBOX = "monitor-outbox.sqlite3"  # beside the queue's outbox.sqlite3, in the same directory

# (payload, schema, max_rows) -> the rows as a checked float64 (n, width) array, or RejectedInput
Parser = Callable[[Any, FeatureSchema, int], np.ndarray]


@dataclass(frozen=True)
class Prediction:
    request_id: str
    probabilities: np.ndarray  # (rows, classes)
    certainty: Certainty


class Dataplane:
    """One per process (per gunicorn worker / gRPC server), built in the component's ``load()``."""

    def __init__(self, settings: ModelSettings, bundle: Any):
        self.settings = settings
        self.bundle = bundle
        manifest = bundle.manifest
        self.schema = FeatureSchema.from_manifest(manifest)
        self.model_name = str(manifest.name)
        self.model_version = str(manifest.version)
        self.artifact_sha256 = str(manifest.artifact_sha256)
        self.metrics = ModelMetrics(self.schema.class_names, settings.metrics_interval_seconds)
        self.records = RecordBuilder(self.schema, self.model_name, self.model_version)
        self.feedback_log = FeedbackLog(settings.outbox_dir)
        self.forwarder: Forwarder | None = None
        if settings.queue_url:
            outbox = Outbox(settings.outbox_dir, settings.outbox_max_records)
            self.forwarder = Forwarder(settings, outbox, self.records.build)
        self.monitor: Forwarder | None = None  # a sample of every prediction to the drift/outlier monitor
        self._sampler = np.random.default_rng()
        if settings.monitor_url and settings.monitor_sample > 0:
            self.monitor = Forwarder(
                settings.model_copy(
                    update={
                        "forward_batch_size": settings.monitor_batch_size,
                        "forward_linger_seconds": settings.monitor_linger_seconds,
                    }
                ),
                Outbox(settings.outbox_dir, settings.outbox_max_records, MONITOR_OUTBOX),
                MonitorRowsBuilder(self.model_name, self.model_version).build,
                url=settings.monitor_url.rstrip("/") + ROWS_PATH,
                api_key=settings.monitor_api_key,
                target="monitor",
                # The monitor refuses a malformed body or rows it can never take (another model version,
                # wrong width) with these: counted as rejected, not retried forever from the outbox.
                permanent_statuses=frozenset({400, 413, 422}),
                batch_rows=settings.monitor_batch_rows,
            )

    def start(self) -> None:
        for forwarder in (self.forwarder, self.monitor):
            if forwarder is not None:
                forwarder.start()

    def stop(self) -> None:
        for forwarder in (self.forwarder, self.monitor):
            if forwarder is not None:
                forwarder.stop()

    @property
    def tags(self) -> dict[str, str]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "artifact_sha256": self.artifact_sha256,
        }

    def predict(
        self,
        payload: Any,
        request_id: str | None = None,
        explainer: bool = False,
        parse: Parser = parse_request,
    ) -> Prediction:
        """Probabilities for a request; ``RejectedInput`` (400) for anything the schema refuses.

        ``parse`` reads the rows: a Seldon body (the default) or V2 ``inputs``
        (``glassbox.contract.v2.decode_inputs``, the MLServer runtime's); all else is the same.
        """
        try:
            X = parse(payload, self.schema, self.settings.max_rows)
        except RejectedInput as exc:
            self.metrics.reject(exc.reason)
            raise
        probabilities = self.bundle.predict_proba(X)
        certainty = Certainty.of(probabilities)
        request_id = request_id or uuid.uuid4().hex
        if explainer:  # the explainer's perturbation samples are not user traffic
            self.metrics.observe_explainer(len(X))
        else:
            self.metrics.observe(certainty)
            self._forward(request_id, X, probabilities, certainty)
            self._monitor(request_id, X, probabilities, certainty)
        return Prediction(request_id, probabilities, certainty)

    def _forward(
        self, request_id: str, X: np.ndarray, probabilities: np.ndarray, certainty: Certainty
    ) -> None:
        if self.forwarder is None:
            return
        rows = certainty.uncertain_rows(self.settings.uncertainty_threshold)
        if len(rows):
            self.forwarder.submit(
                UncertainRows.select(request_id, rows, X, probabilities, certainty, time.time())
            )

    def _monitor(
        self, request_id: str, X: np.ndarray, probabilities: np.ndarray, certainty: Certainty
    ) -> None:
        if self.monitor is None:
            return
        sample = self.settings.monitor_sample
        now = time.time()
        if sample >= 1.0:  # every row: hand over the request's own arrays (nothing mutates them), no copy
            c = certainty
            item = UncertainRows(request_id, np.arange(len(X)), X, probabilities, c.max_probability,
                                 c.margin, c.entropy, c.predicted, now)  # fmt: skip
        else:
            rows = np.flatnonzero(self._sampler.random(len(X)) < sample)
            if not len(rows):
                return
            item = UncertainRows.select(request_id, rows, X, probabilities, certainty, now)
        self.monitor.submit(item)

    def feedback(
        self, request: Mapping[str, Any], truth: Any, reward: float, response: Mapping[str, Any]
    ) -> int:
        """Record truth and reward for the rows of ``request``; returns how many rows were recorded."""
        try:
            X = parse_request(request, self.schema, self.settings.max_rows)
            truths = self._truth_labels(truth, len(X))
            meta = request_meta(request, "request.meta")
            response_meta = request_meta(response, "response.meta") if isinstance(response, Mapping) else {}
            feedback_id = (response_meta.get("tags") or {}).get(FEEDBACK_ID_TAG)
            if feedback_id is not None and not isinstance(feedback_id, str):
                raise RejectedInput("bad_payload", f"response.meta.tags.{FEEDBACK_ID_TAG} must be a string")
        except RejectedInput as exc:
            self.metrics.reject("feedback_" + exc.reason)
            raise
        predicted = self._response_labels(response, len(X))
        request_id = response_meta.get("puid") or meta.get("puid") or ""
        recorded = self.feedback_log.record(
            request_id, truths, predicted, float(reward), self.model_version, feedback_id
        )
        if recorded:  # a repeated delivery of the same feedback is answered, not counted again
            self.metrics.observe_feedback(float(reward), recorded)
        return recorded

    def _truth_labels(self, truth: Any, rows: int) -> list[str | None]:
        """Truth as one-hot rows (``data.ndarray``, the queue's form) or a class name (``strData``).

        Feedback may carry a reward alone (``SeldonClient.microservice_feedback`` sends no truth).
        """
        classes = self.schema.class_names
        data = truth.get("data") if isinstance(truth, Mapping) else None
        if not truth:
            return [None] * rows
        if isinstance(truth, Mapping) and isinstance(truth.get("strData"), str):
            labels = [truth["strData"]] * rows
        elif isinstance(data, Mapping) and isinstance(data.get("ndarray"), list):
            labels = []
            for i, row in enumerate(data["ndarray"]):
                if isinstance(row, str):
                    labels.append(row)
                    continue
                if not (isinstance(row, list) and len(row) == len(classes)) or not all(
                    isinstance(v, int | float) for v in row
                ):
                    raise RejectedInput(
                        "bad_truth",
                        f"truth row {i} must be one-hot over {list(classes)} or a class name: {row!r:.80}",
                    )
                labels.append(classes[int(np.argmax(np.asarray(row, dtype=float)))])
        else:
            raise RejectedInput(
                "bad_truth",
                f"feedback needs 'truth' as data.ndarray (one-hot over {list(classes)}) or strData",
            )
        unknown = [label for label in labels if label not in classes]
        if unknown:
            raise RejectedInput(
                "bad_truth", f"truth {unknown[0]!r} is not a class; expected one of {list(classes)}"
            )
        if len(labels) != rows:
            raise RejectedInput("bad_truth", f"truth has {len(labels)} rows but the request has {rows}")
        return labels

    def _response_labels(self, response: Mapping[str, Any], rows: int) -> list[str | None]:
        data = response.get("data") if isinstance(response, Mapping) else None
        probabilities = data.get("ndarray") if isinstance(data, Mapping) else None
        try:
            P = np.asarray(probabilities, dtype=float)
        except (TypeError, ValueError):
            P = None
        if P is None or P.shape != (rows, len(self.schema.class_names)):
            return [None] * rows
        return [self.schema.class_names[i] for i in P.argmax(axis=1)]

    def report_metrics(self, force: bool = False) -> None:
        self.metrics.report(
            self.forwarder.stats if self.forwarder else None,
            force,
            monitor=self.monitor.stats if self.monitor else None,
        )
