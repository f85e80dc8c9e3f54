"""``LoanClassifier``: the loan classifier as a Seldon Core 1.19 Python component (MODEL).

Run by ``seldon-core-microservice LoanClassifier --service-type MODEL`` (the s2i context in
``models/loanclassifier/`` re-exports this class). It implements ``predict_raw`` so that it sees the
whole request (``meta.puid``, ``jsonData``, ``names``) and builds the response itself, and
``send_feedback_raw`` for the same reason; the work is done by ``Dataplane``.

Lifecycle: Seldon builds the object once in the parent process, then calls ``load()`` in every
gunicorn worker and in the gRPC server process after they fork. Everything that holds a thread, a
file handle or a compiled fast path is therefore created in ``load()``, never in ``__init__``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flask import has_request_context
from flask import request as http_request  # predict_raw's own argument is also called request
from seldon_core.proto import prediction_pb2
from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

from glassbox.contract.schema import RejectedInput
from glassbox.contract.seldon import EXPLAINER_TRAFFIC, TRAFFIC_HEADER, TRAFFIC_TAG, seldon_error_body
from glassbox.errors import ConfigError, GlassboxError
from glassbox.seldon import prometheus
from glassbox.seldon.http_errors import SeldonError, error_blueprint
from glassbox.seldon.lifecycle import install_for_microservice, on_stop
from glassbox.seldon.metadata import describe
from glassbox.serving.dataplane import Dataplane
from glassbox.serving.settings import ModelSettings

logger = logging.getLogger(__name__)


class LoanClassifier:
    """Seldon MODEL component; Seldon passes SeldonDeployment ``parameters`` as keyword arguments."""

    def __init__(self, **parameters: Any):
        try:
            # Deployment parameters override GLASSBOX_MODEL_* variables of the same name.
            self.settings = ModelSettings(**parameters)
        except ValueError as exc:
            raise ConfigError(f"bad LoanClassifier settings: {exc}") from exc
        self.dataplane: Dataplane | None = None
        self.metrics_dir = prometheus.prepare()  # before Seldon forks: see glassbox.seldon.prometheus
        # Seldon registers this Blueprint on its Flask app: malformed JSON etc. answer 4xx, not 500.
        self.model_error_handler = error_blueprint(self._count_rejection)
        # Inside seldon-core-microservice only: SIGTERM stops its whole process tree within the grace.
        install_for_microservice(self.settings.shutdown_grace_seconds)

    # --- lifecycle -------------------------------------------------------------------------------

    def load(self) -> None:
        from glassbox.pipeline.artifacts import load_bundle  # heavy (onnxruntime): after fork only

        prometheus.activate(self.metrics_dir)  # before Dataplane creates its metrics
        bundle = load_bundle(self.settings.artifacts)  # verifies every SHA-256 before unpickling
        bundle.predict_proba(np.zeros((1, bundle.n_features)))  # compile the fast path now, not on request 1
        self.dataplane = Dataplane(self.settings, bundle)
        self.dataplane.start()
        on_stop(self.dataplane.stop)  # SIGTERM, exit: buffered rows go to the outbox, not lost
        logger.info("loaded %s", self.dataplane.tags)

    def _count_rejection(self, reason: str) -> None:
        if self.dataplane is not None:
            self.dataplane.metrics.reject(reason)

    def _ready(self) -> Dataplane:
        if self.dataplane is None:
            raise SeldonError("model not loaded yet", status_code=503, reason="MICROSERVICE_NOT_READY")
        return self.dataplane

    # --- predictions -----------------------------------------------------------------------------

    def predict_raw(
        self, request: prediction_pb2.SeldonMessage | dict
    ) -> prediction_pb2.SeldonMessage | dict:
        dataplane = self._ready()
        is_proto = isinstance(request, prediction_pb2.SeldonMessage)
        payload = seldon_message_to_json(request) if is_proto else request
        meta = payload.get("meta") if isinstance(payload, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        try:
            puid = meta.get("puid")
            prediction = dataplane.predict(payload, str(puid) if puid else None, _is_explainer(meta))
        except RejectedInput as exc:
            if is_proto:
                raise SeldonError(exc.message, status_code=400) from exc
            # REST: the wrapper turns status.code into the HTTP status.
            return seldon_error_body(exc.message, 400)
        response = {
            "data": {
                "names": list(dataplane.schema.class_names),
                "ndarray": prediction.probabilities.tolist(),
            },
            "meta": {
                "puid": prediction.request_id,
                "tags": dataplane.tags,
            },
        }
        dataplane.report_metrics()
        return json_to_seldon_message(response) if is_proto else response

    def predict(self, X: Any, feature_names: list[str] | None = None, meta: dict | None = None) -> np.ndarray:
        """Class probabilities for ``X`` (rows in feature order, or ordered by ``feature_names``)."""
        data = {"ndarray": X.tolist() if isinstance(X, np.ndarray) else X, "names": list(feature_names or [])}
        try:
            return self._ready().predict({"data": data}, (meta or {}).get("puid")).probabilities
        except GlassboxError as exc:
            raise SeldonError(exc.message, status_code=exc.status_code) from exc

    # --- feedback --------------------------------------------------------------------------------

    def send_feedback_raw(self, feedback: prediction_pb2.Feedback) -> prediction_pb2.SeldonMessage:
        message = seldon_message_to_json(feedback)
        return self.send_feedback(
            message.get("request") or {},
            None,
            float(message.get("reward") or 0.0),
            message.get("truth") or {},
            response=message.get("response") or {},
        )

    def send_feedback(
        self,
        features: dict,
        feature_names: list[str] | None,
        reward: float,
        truth: dict,
        routing: int | None = None,
        response: dict | None = None,
    ) -> prediction_pb2.SeldonMessage:
        """Record truth and reward (durably, in the feedback log) for a request and its response."""
        dataplane = self._ready()
        try:
            rows = dataplane.feedback(features, truth, reward, response or {})
        except GlassboxError as exc:
            raise SeldonError(exc.message, status_code=exc.status_code) from exc
        answer = {
            "data": {"names": ["recorded"], "ndarray": [rows]},
            "meta": {"tags": dataplane.tags},
        }
        dataplane.report_metrics(force=True)
        return json_to_seldon_message(answer)

    # --- description -----------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        return list(self._ready().schema.class_names)

    def tags(self) -> dict[str, str]:
        return self._ready().tags

    def metrics(self) -> list[dict]:
        """Seldon's custom-metrics hook (health checks, non-raw methods): none, the component exports
        its own (``glassbox.seldon.prometheus``); used to bring the forwarding counters up to date."""
        if self.dataplane:
            self.dataplane.report_metrics(force=True)
        return []

    def health_status(self) -> dict:
        dataplane = self._ready()
        stats = dataplane.forwarder.stats if dataplane.forwarder else None
        return {
            "status": "ok",
            **dataplane.tags,
            "forwarding": dataplane.forwarder is not None,
            "outbox_depth": stats.outbox_depth if stats else 0,
        }

    def init_metadata(self) -> dict:
        """Inputs and outputs for ``/metadata``."""
        custom = {
            "uncertainty_threshold": str(self.settings.uncertainty_threshold),
            "max_rows": str(self.settings.max_rows),
        }
        return describe(self.settings.artifacts, "probabilities", custom)


def _is_explainer(meta: dict) -> bool:
    tags = meta.get("tags")
    if isinstance(tags, dict) and tags.get(TRAFFIC_TAG) == EXPLAINER_TRAFFIC:
        return True
    return has_request_context() and http_request.headers.get(TRAFFIC_HEADER, "").lower() == EXPLAINER_TRAFFIC
