"""``GlassboxModel``: the loan classifier as an MLServer runtime (Open Inference Protocol V2).

Served by ``mlserver start`` (``glassbox serve-v2 --component model`` writes its settings), on KServe's
``ServingRuntime`` or Seldon Core 2. It is a thin adapter, as ``component.LoanClassifier`` is for Seldon
v1: V2 tensors are read by ``glassbox.contract.v2.decode_inputs`` and everything else (checks, fast
path, certainty, metrics, forwarding to the review queue through the buffer and the durable outbox) is
the same ``Dataplane``. A bad input is an ``MLServerError`` with the ``RejectedInput``'s status (400,
gRPC ``INVALID_ARGUMENT``) and message.

Settings: ``GLASSBOX_MODEL_*`` as for the Seldon component; the artifacts are the model settings' ``uri``
(``parameters.uri``, or KServe's ``MLSERVER_MODEL_URI``), and ``parameters.extra`` overrides the rest.
Metrics: ``glassbox_model_*`` on MLServer's metrics port (``/metrics``), beside MLServer's own.
"""

from __future__ import annotations

import json
import logging
import multiprocessing.util
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
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
from glassbox.contract.seldon import EXPLAINER_TRAFFIC, TRAFFIC_HEADER, TRAFFIC_TAG
from glassbox.contract.v2 import (
    LABELS_OUTPUT,
    PROBABILITIES_OUTPUT,
    decode_inputs,
    describe_inputs,
    describe_outputs,
    requested_outputs,
    runtime_settings,
)
from glassbox.errors import GlassboxError
from glassbox.serving.dataplane import Dataplane
from glassbox.serving.settings import ModelSettings

logger = logging.getLogger(__name__)

OUTPUTS = (PROBABILITIES_OUTPUT, LABELS_OUTPUT)  # what the model answers, all unless the request picks


def is_explainer_traffic(parameters: Parameters | None) -> bool:
    """The explainer marks its calls with a request parameter (REST and gRPC) or, over REST, a header."""
    if parameters is None:
        return False
    if (parameters.model_extra or {}).get(TRAFFIC_TAG) == EXPLAINER_TRAFFIC:
        return True
    headers = parameters.headers or {}
    return str(headers.get(TRAFFIC_HEADER.lower(), "")).lower() == EXPLAINER_TRAFFIC


def show_metrics(dataplane: Dataplane) -> Callable[[], None]:
    """Show the dataplane's metrics on MLServer's metrics endpoint; returns the call that hides them.

    With ``parallel_workers: 0`` MLServer serves prometheus-client's default ``REGISTRY``: ours is
    registered there, behind a collector that first copies the forwarder's running totals in (as the
    Seldon component's health checks do), so a scrape sees rows forwarded since the last request. With
    parallel workers MLServer serves the multiprocess files, which every metric created in a worker
    writes (MLServer switches prometheus-client to them there); totals are copied in on requests then.
    """
    from prometheus_client import REGISTRY

    collector = _FreshMetrics(dataplane)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)


class _FreshMetrics:
    def __init__(self, dataplane: Dataplane):
        self.dataplane = dataplane

    def collect(self) -> Iterator[Any]:
        self.dataplane.report_metrics(force=True)
        yield from self.dataplane.metrics.registry.collect()


class GlassboxModel(MLModel):
    """The V2 model: ``load`` builds the ``Dataplane``; ``predict`` is one call into it."""

    dataplane: Dataplane | None = None

    async def load(self) -> bool:
        from glassbox.pipeline.artifacts import load_bundle  # heavy: at load, not at import

        settings = runtime_settings(ModelSettings, self.settings, "GlassboxModel")
        bundle = load_bundle(settings.artifacts)  # verifies every SHA-256 before unpickling
        bundle.predict_proba(np.zeros((1, bundle.n_features)))  # compile the fast path now
        dataplane = Dataplane(settings, bundle)
        dataplane.start()
        # At exit (MLServer's main process, or a parallel worker, which multiprocessing ends without
        # atexit): buffered rows go to the outbox, not lost.
        multiprocessing.util.Finalize(None, dataplane.stop, exitpriority=10)
        self._hide_metrics = show_metrics(dataplane)
        self.dataplane = dataplane
        self._metadata = self._describe(dataplane)
        logger.info("loaded %s", dataplane.tags)
        return True

    async def unload(self) -> bool:
        if self.dataplane is not None:
            self.dataplane.stop()
            self._hide_metrics()
            self.dataplane = None
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        dataplane = self.dataplane
        if dataplane is None:
            raise MLServerError("model not loaded yet", status_code=503)
        try:
            wanted = requested_outputs(payload.outputs, OUTPUTS)
            prediction = dataplane.predict(
                payload.inputs, payload.id, is_explainer_traffic(payload.parameters), parse=decode_inputs
            )
        except GlassboxError as exc:
            if isinstance(exc, RejectedInput) and exc.reason == "bad_output":
                dataplane.metrics.reject(exc.reason)
            raise MLServerError(exc.message, status_code=exc.status_code) from None
        outputs = []
        if PROBABILITIES_OUTPUT in wanted:
            probabilities = prediction.probabilities
            outputs.append(
                ResponseOutput(
                    name=PROBABILITIES_OUTPUT,
                    shape=list(probabilities.shape),
                    datatype="FP64",
                    data=probabilities.ravel().tolist(),
                    parameters=Parameters(content_type="np"),
                )
            )
        if LABELS_OUTPUT in wanted:
            classes = dataplane.schema.class_names
            labels = [classes[i] for i in prediction.certainty.predicted.tolist()]
            outputs.append(
                ResponseOutput(
                    name=LABELS_OUTPUT,
                    shape=[len(labels)],
                    datatype="BYTES",
                    data=labels,
                    parameters=Parameters(content_type="str"),
                )
            )
        dataplane.report_metrics()
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=prediction.request_id,
            parameters=Parameters(**dataplane.tags),
            outputs=outputs,
        )

    async def metadata(self) -> MetadataModelResponse:
        return getattr(self, "_metadata", None) or await super().metadata()

    def _describe(self, dataplane: Dataplane) -> MetadataModelResponse:
        """Inputs (one per feature; category names of the categoricals) and outputs, for ``/v2/models/…``."""
        schema = dataplane.schema
        settings = dataplane.settings
        return MetadataModelResponse(
            name=self.name,
            versions=[dataplane.model_version],
            platform="glassbox",
            inputs=[_tensor(t) for t in describe_inputs(schema)],
            outputs=[_tensor(t) for t in describe_outputs(schema)],
            parameters=Parameters(
                **dataplane.tags,
                feature_names=json.dumps(list(schema.feature_names)),
                class_names=json.dumps(list(schema.class_names)),
                uncertainty_threshold=str(settings.uncertainty_threshold),
                max_rows=str(settings.max_rows),
            ),
        )


def _tensor(description: dict[str, Any]) -> MetadataTensor:
    return MetadataTensor(
        name=description["name"],
        datatype=description["datatype"],
        shape=description["shape"],
        parameters=Parameters(**description["parameters"]),
    )
