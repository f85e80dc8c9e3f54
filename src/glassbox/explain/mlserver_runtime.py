"""``GlassboxExplainer``: the explainer as an MLServer runtime (Open Inference Protocol V2).

Served as MLServer's alibi-explain runtime serves explainers (that runtime has no release for Python
3.12): the rows to explain are the request's ``inputs``, read by the model's own V2 codec
(``glassbox.contract.v2``: one tensor per feature, or one ``[n, width]`` tensor); the options are the
request's ``parameters`` (``explain_parameters`` as alibi-explain names them, or ``params``, plus
``seed``, ``job``, ``job_id`` and whatever else the explainer's request takes); the answer is one
``BYTES`` output named ``explanation`` holding the explanation JSON, the same body as the Seldon
explainer's ``jsonData``. Over gRPC, whose parameters hold only scalars, an object is sent as a JSON
string.

Everything between parsing and answering is the transport-neutral ``ExplainService``, built by the same
``assembly.build_service`` as the Seldon component (cache, jobs, metrics, the model called over Seldon or
V2 per ``GLASSBOX_EXPLAINER_MODEL_PROTOCOL``). Requests run on a thread: an explanation takes seconds
and must not hold MLServer's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    ResponseOutput,
)

from glassbox.contract.schema import RejectedInput
from glassbox.contract.v2 import (
    EXPLANATION_OUTPUT,
    decode_inputs,
    describe_inputs,
    requested_outputs,
    runtime_settings,
)
from glassbox.errors import GlassboxError
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.service import ExplainService
from glassbox.explain.settings import ExplainerSettings
from glassbox.explain.wire import parse_payload

logger = logging.getLogger(__name__)

# Request parameters that MLServer sets or reads, and those Triton's clients add (tritonclient's HTTP
# client always sends binary_data_output): not explanation options.
TRANSPORT_PARAMETERS = frozenset(
    {
        "headers",
        "content_type",
        "binary_data_output",
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
    }
)
PARAMS_ALIASES = ("explain_parameters", "params")  # alibi-explain's name, and the Seldon explainer's


def explain_body(payload: InferenceRequest, schema: Any, max_rows: int) -> dict[str, Any]:
    """The Seldon explainer's ``jsonData`` request for a V2 request: rows from ``inputs``, options from
    ``parameters``; parsed by the same ``wire.parse_payload`` afterwards."""
    options: dict[str, Any] = {}
    extra = payload.parameters.model_extra if payload.parameters is not None else None
    for key, value in (extra or {}).items():
        if key in TRANSPORT_PARAMETERS:
            continue
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)  # gRPC: objects travel as JSON strings
            except ValueError:
                raise RejectedInput(
                    "bad_options", f"parameters.{key} is not valid JSON: {value[:80]!r}"
                ) from None
        options["params" if key in PARAMS_ALIASES else key] = value
    if payload.inputs or "job_id" not in options:
        options["instances"] = decode_inputs(payload.inputs, schema, max_rows).tolist()
    return {"jsonData": options}


def v2_wording(message: str) -> str:
    """The shared parser's message in V2 terms (rows are ``inputs``, options ``parameters``)."""
    return message.replace("jsonData.instances", "inputs").replace("jsonData", "parameters")


class GlassboxExplainer(MLModel):
    """The V2 explainer: ``load`` builds the ``ExplainService``; ``predict`` explains (or polls a job)."""

    service: ExplainService | None = None

    async def load(self) -> bool:
        from prometheus_client import REGISTRY

        from glassbox.explain.assembly import build_service  # alibi, artifacts: at load only

        self.explainer_settings = runtime_settings(ExplainerSettings, self.settings, "GlassboxExplainer")
        self.recorder = ExplainerMetrics()
        service, manifest = build_service(self.explainer_settings, self.recorder)
        # MLServer's /metrics serves the default registry (or, with parallel workers, the multiprocess
        # files every metric created in a worker writes).
        REGISTRY.register(self.recorder.registry)
        self.recorder.families  # noqa: B018 - create the series now: the dashboard sees them at 0
        self.manifest = manifest
        self.service = service
        self._metadata = self._describe(service)
        logger.info(
            "explainer for %s %s calls %s (%s)",
            manifest.name,
            manifest.version,
            self.explainer_settings.model_url,
            self.explainer_settings.model_protocol,
        )
        return True

    async def unload(self) -> bool:
        if self.service is not None:
            from prometheus_client import REGISTRY

            self.service.jobs.close()
            REGISTRY.unregister(self.recorder.registry)
            self.service = None
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        service = self.service
        if service is None:
            raise MLServerError("explainer is still loading its artifacts; retry shortly", status_code=503)
        try:
            requested_outputs(payload.outputs, (EXPLANATION_OUTPUT,))
            body = explain_body(payload, service.explainer.schema, self.explainer_settings.max_rows)
            request = parse_payload(body, service.explainer.schema, self.explainer_settings.max_rows)
            answer = await asyncio.to_thread(service.handle, request)
        except GlassboxError as exc:
            if exc.status_code < 500:  # failures of the work itself are counted by the service
                self.recorder.failed(getattr(exc, "reason", "invalid_input"))
            raise MLServerError(v2_wording(exc.message), status_code=exc.status_code) from None
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            parameters=Parameters(**self._tags()),
            outputs=[
                ResponseOutput(
                    name=EXPLANATION_OUTPUT,
                    shape=[1],
                    datatype="BYTES",
                    data=[json.dumps(answer)],
                    parameters=Parameters(content_type="str"),
                )
            ],
        )

    async def metadata(self) -> MetadataModelResponse:
        return getattr(self, "_metadata", None) or await super().metadata()

    def _tags(self) -> dict[str, str]:
        return {"model_version": str(self.manifest.version), "artifact_sha256": self.manifest.artifact_sha256}

    def _describe(self, service: ExplainService) -> MetadataModelResponse:
        schema = service.explainer.schema
        return MetadataModelResponse(
            name=self.name,
            versions=[str(self.manifest.version)],
            platform="glassbox-explainer",
            inputs=[
                MetadataTensor(
                    name=t["name"],
                    datatype=t["datatype"],
                    shape=t["shape"],
                    parameters=Parameters(**t["parameters"]),
                )
                for t in describe_inputs(schema)
            ],
            outputs=[
                MetadataTensor(
                    name=EXPLANATION_OUTPUT,
                    datatype="BYTES",
                    shape=[1],
                    parameters=Parameters(content_type="str"),
                )
            ],
            parameters=Parameters(
                **self._tags(),
                max_rows=str(self.explainer_settings.max_rows),
                model_url=self.explainer_settings.model_url,
                model_protocol=self.explainer_settings.model_protocol,
            ),
        )
