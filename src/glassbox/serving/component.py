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

import atexit
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import has_request_context
from flask import request as http_request  # predict_raw's own argument is also called request
from seldon_core.proto import prediction_pb2
from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

from glassbox.contract.schema import RejectedInput
from glassbox.contract.seldon import EXPLAINER_TRAFFIC, TRAFFIC_HEADER, TRAFFIC_TAG, seldon_error_body
from glassbox.errors import ConfigError, GlassboxError
from glassbox.seldon.http_errors import SeldonError, error_blueprint
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
        # Seldon registers this Blueprint on its Flask app: malformed JSON etc. answer 4xx, not 500.
        self.model_error_handler = error_blueprint(self._count_rejection)

    # --- lifecycle -------------------------------------------------------------------------------

    def load(self) -> None:
        from glassbox.pipeline.artifacts import load_bundle  # heavy (onnxruntime): after fork only

        bundle = load_bundle(self.settings.artifacts)  # verifies every SHA-256 before unpickling
        bundle.predict_proba(np.zeros((1, bundle.n_features)))  # compile the fast path now, not on request 1
        self.dataplane = Dataplane(self.settings, bundle)
        self.dataplane.start()
        atexit.register(self.dataplane.stop)  # SIGTERM: buffered rows go to the outbox, not lost
        _stop_on_sigterm(self.dataplane.stop)
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
            if is_proto:  # gRPC has no body to carry metrics: they go out with the next response
                raise SeldonError(exc.message, status_code=400) from exc
            # REST: answering with a status body (rather than raising) lets Seldon record the
            # rejection counter now; the wrapper turns status.code into the HTTP status.
            return {**seldon_error_body(exc.message, 400), "meta": {"metrics": dataplane.report_metrics()}}
        response = {
            "data": {
                "names": list(dataplane.schema.class_names),
                "ndarray": prediction.probabilities.tolist(),
            },
            "meta": {
                "puid": prediction.request_id,
                "tags": dataplane.tags,
                "metrics": _for_proto(dataplane.report_metrics()) if is_proto else dataplane.report_metrics(),
            },
        }
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
            "meta": {"tags": dataplane.tags, "metrics": _for_proto(dataplane.report_metrics(force=True))},
        }
        return json_to_seldon_message(answer)

    # --- description -----------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        return list(self._ready().schema.class_names)

    def tags(self) -> dict[str, str]:
        return self._ready().tags

    def metrics(self) -> list[dict]:
        """Pending custom metrics (Seldon calls this on health checks and non-raw methods)."""
        return self.dataplane.report_metrics(force=True) if self.dataplane else []

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
        """Inputs and outputs for ``/metadata``. Seldon asks before ``load()``: read only the manifest."""
        from glassbox.pipeline.artifacts import read_manifest, resolve_version_dir

        try:
            manifest = read_manifest(resolve_version_dir(self.settings.artifacts))
        except GlassboxError as exc:  # load() will fail loudly on the same problem
            logger.error("no model metadata: %s", exc.message)
            return {"name": "loanclassifier", "platform": "seldon"}
        names = list(manifest.feature_names)
        categories = {names[j]: list(cs) for j, cs in manifest.category_map_int.items()}
        features = {
            name: {"type": "categorical", "categories": categories[name]}
            if name in categories
            else {"type": "numeric"}
            for name in names
        }
        classes = list(manifest.class_names)
        return {
            "name": manifest.name,
            "versions": [manifest.version],
            "platform": "seldon",
            "inputs": [
                {"messagetype": "ndarray", "schema": {"names": names, "shape": [len(names)]}},
                {"messagetype": "tensor", "schema": {"names": names, "shape": [len(names)]}},
                {"messagetype": "jsonData", "schema": {"type": "object", "properties": features}},
            ],
            "outputs": [{"messagetype": "ndarray", "schema": {"names": classes, "shape": [len(classes)]}}],
            "custom": {
                "artifact_sha256": manifest.artifact_sha256,
                "uncertainty_threshold": str(self.settings.uncertainty_threshold),
                "max_rows": str(self.settings.max_rows),
            },
        }


def _stop_on_sigterm(stop: Callable[[], None]) -> None:
    """Run ``stop`` on SIGTERM in Seldon's gRPC server process too.

    Gunicorn workers exit through ``sys.exit`` on SIGTERM, so ``atexit`` runs there. Seldon's gRPC
    server is a ``multiprocessing`` child that sleeps in its main thread: SIGTERM's default action
    would end it on the spot, and multiprocessing children skip ``atexit`` even on a normal exit.
    """
    if multiprocessing.parent_process() is None or threading.current_thread() is not threading.main_thread():
        return  # a gunicorn worker (a plain fork) or a test: SIGTERM is already handled

    def handler(signum: int, frame: object) -> None:
        stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def _for_proto(metrics: list[dict]) -> list[dict]:
    """Metrics that survive Seldon's protobuf round trip (gRPC predictions, all feedback).

    Seldon reads them back with ``MessageToJson``, which omits a value of 0: Seldon then fails with
    ``KeyError: 'value'``. A zero counter increment changes nothing, so it is left out; gauges are
    left out too (a gauge falling to 0 could not be said), and the outbox depth is the same shared
    SQLite file that the REST workers report on their responses and health checks.
    """
    return [m for m in metrics if m["value"] and m["type"] != "GAUGE"]


def _is_explainer(meta: dict) -> bool:
    tags = meta.get("tags")
    if isinstance(tags, dict) and tags.get(TRAFFIC_TAG) == EXPLAINER_TRAFFIC:
        return True
    return has_request_context() and http_request.headers.get(TRAFFIC_HEADER, "").lower() == EXPLAINER_TRAFFIC
