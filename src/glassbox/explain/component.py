"""``LoanExplainer``: the Seldon Python-wrapper class (service type MODEL) that explains loan decisions.

It loads the fitted AnchorTabular from a manifest-verified artifact bundle and explains rows with
the DEPLOYED model, called over REST (``GLASSBOX_EXPLAINER_MODEL_URL``). Loading never calls the
model, so the explainer starts while the model is down and answers 503 until it is reachable.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from seldon_core.proto import prediction_pb2
from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

from glassbox.errors import ConfigError, GlassboxError, UpstreamUnavailable
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.routes import build_blueprint
from glassbox.explain.settings import ExplainerSettings
from glassbox.explain.wire import parse_payload, to_seldon
from glassbox.seldon import prometheus
from glassbox.seldon.http_errors import SeldonError
from glassbox.seldon.lifecycle import install_for_microservice, on_stop
from glassbox.seldon.metadata import describe

if TYPE_CHECKING:
    from glassbox.explain.service import ExplainService

log = logging.getLogger(__name__)


class LoanExplainer:
    """Seldon calls ``__init__`` (with the deployment's parameters), then ``load`` in each worker."""

    def __init__(self, **parameters: Any):
        try:
            # SeldonDeployment parameters override GLASSBOX_EXPLAINER_* (e.g. model_url per deployment).
            self.settings = ExplainerSettings(**parameters)
        except ValueError as exc:  # pydantic's ValidationError: fail at start-up, naming the setting
            raise ConfigError(f"bad LoanExplainer settings: {exc}") from exc
        self.recorder = ExplainerMetrics()  # its metrics are created on first use, after load()
        self.metrics_dir = prometheus.prepare()  # before Seldon forks: see glassbox.seldon.prometheus
        self.service: ExplainService | None = None
        self.manifest: Any = None
        # Seldon registers this blueprint on its REST app: error mapping, /api/v1.0/explain, job polling.
        # Every rejected request (4xx) is counted in glassbox_explainer_failures_total by its reason.
        self.model_error_handler = build_blueprint(self, on_rejection=self.recorder.failed)
        # Inside seldon-core-microservice only: SIGTERM stops its whole process tree within the grace.
        install_for_microservice(self.settings.shutdown_grace_seconds)

    def load(self) -> None:
        # alibi, numba and the pipeline's loader are imported here, after Seldon forks its workers:
        # imported in the parent they cost every process start-up time and memory, and a library
        # that starts threads at import (onnxruntime, numba's) can leave forked workers hanging at exit.
        from glassbox.explain.assembly import build_service  # alibi, artifacts, predictor, stores

        prometheus.activate(self.metrics_dir)  # before the recorder creates its metrics
        settings = self.settings
        self.service, manifest = build_service(settings, self.recorder)
        self.manifest = manifest
        on_stop(self.service.jobs.close)  # at exit: take no further queued job
        log.info("explainer for %s %s calls %s", manifest.name, manifest.version, settings.model_url)

    def predict_raw(
        self, request: prediction_pb2.SeldonMessage | dict
    ) -> prediction_pb2.SeldonMessage | dict:
        """Explain a Seldon request. Glassbox parses the body itself (not Seldon's ``predict`` path, whose
        own parsing answers 500 to ragged arrays or odd ``meta``), with the model's input contract."""
        is_proto = isinstance(request, prediction_pb2.SeldonMessage)
        try:
            payload = seldon_message_to_json(request) if is_proto else request
            service = self._service()
            explain_request = parse_payload(payload, service.explainer.schema, self.settings.max_rows)
            body = to_seldon(service.handle(explain_request), self.settings.response_format)
        except GlassboxError as exc:
            if not is_proto:
                raise  # the blueprint answers its status with Seldon's error body and counts it
            self.recorder.failed(getattr(exc, "reason", "invalid_input"))
            raise SeldonError(exc.message, status_code=exc.status_code) from exc
        response = {**body, "meta": {"tags": self.tags()}}
        return json_to_seldon_message(response) if is_proto else response

    def send_feedback_raw(self, feedback: Any) -> Any:
        raise SeldonError(
            "the explainer takes no feedback: send it to the model's /api/v1.0/feedback", status_code=400
        )

    def init_metadata(self) -> dict[str, Any]:
        """Inputs and outputs for ``/metadata``: the model's inputs, explanations out."""
        return describe(self.settings.artifacts, "explanations", {"max_rows": str(self.settings.max_rows)})

    def poll(self, job_id: str) -> dict[str, Any]:
        return self._service().poll(job_id)

    def tags(self) -> dict[str, Any]:
        if self.manifest is None:
            return {}
        return {"model_version": self.manifest.version, "artifact_sha256": self.manifest.artifact_sha256}

    def _service(self) -> ExplainService:
        if self.service is None:
            raise UpstreamUnavailable("explainer is still loading its artifacts; retry shortly")
        return self.service
