"""Build the explainer's ``ExplainService`` from its settings: one assembly for every transport.

The Seldon component (``component.LoanExplainer.load``) and the MLServer runtime
(``mlserver_runtime.GlassboxExplainer.load``) both call :func:`build_service`, so both explain with the
same artifacts, predictor, stores and methods. Imported at load time only (alibi, the artifacts).
"""

from __future__ import annotations

from typing import Any

from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.remote import RemotePredictor
from glassbox.explain.service import ExplainService
from glassbox.explain.settings import ExplainerSettings


def build_predictor(settings: ExplainerSettings, manifest: Any) -> RemotePredictor:
    """The model over Seldon v1 (``model_protocol=seldon``) or the Open Inference Protocol (``v2``)."""
    if settings.model_protocol == "v2":
        from glassbox.explain.remote_v2 import RemoteV2Predictor

        kind: type[RemotePredictor] = RemoteV2Predictor
    else:
        kind = RemotePredictor
    return kind(
        settings.model_url,
        manifest.feature_names,
        manifest.class_names,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        retries=settings.retries,
        pool_size=settings.pool_size,
        artifact_sha256=manifest.artifact_sha256,
        max_rows_per_call=settings.max_rows_per_call,
    )


def build_service(settings: ExplainerSettings, recorder: ExplainerMetrics) -> tuple[ExplainService, Any]:
    """(the service, the artifacts' manifest). Never calls the model: it may be down at start-up."""
    from glassbox.contract.schema import FeatureSchema
    from glassbox.explain.core import DeterministicExplainer
    from glassbox.explain.stores import build_stores  # in-process, or Redis for every process
    from glassbox.pipeline.artifacts import load_bundle  # verifies every SHA-256 before unpickling

    bundle = load_bundle(settings.artifacts)
    manifest = bundle.manifest
    schema = FeatureSchema.from_manifest(manifest)
    explainer = DeterministicExplainer(
        bundle.load_explainer(bind=False),
        build_predictor(settings, manifest),
        schema,
        list(manifest.class_names),
        manifest.artifact_sha256,
    )
    from glassbox.explain.methods import build_runner  # attributions, counterfactuals (issue #13)

    methods = build_runner(bundle, explainer, explainer.predictor.predictor, settings.methods)
    cache, jobs = build_stores(settings, manifest.artifact_sha256)
    service = ExplainService(
        explainer,
        cache,
        jobs,
        recorder,
        default_seed=settings.seed,
        max_rows=settings.max_rows,
        sync_wait_s=settings.sync_wait_s,
        methods=methods,
    )
    return service, manifest
