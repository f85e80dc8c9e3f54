"""Explanation methods a batch can run, by name: what each worker builds once and then calls per row.

A method is a loader ``load(model, params) -> explain`` where ``explain(instance, seed)`` returns a
JSON-safe dict for one encoded row and must be a pure function of (row, params, seed): that is what
makes a batch's output the same on one process or forty. A result may name ``"features"``, the features
the method holds responsible; the review step compares those sets across methods.

Built in: ``anchors`` (``glassbox.explain.core.DeterministicExplainer`` over the bundle's fast path),
``attributions`` and ``counterfactuals`` (the explainer's TreeSHAP and DiCE, over the bundle's forest).
Any other method is named ``package.module:function`` (a loader with the same signature), importable in
every worker: that is how methods from outside this package plug in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from glassbox.contract.schema import FeatureSchema
from glassbox.errors import InvalidInput

if TYPE_CHECKING:
    from glassbox.pipeline.artifacts import Bundle

RowExplainer = Callable[[np.ndarray, int], dict[str, Any]]
Loader = Callable[["LoadedModel", dict[str, Any]], RowExplainer]


@dataclass
class LoadedModel:
    """One worker's verified model version: what every method builds on."""

    bundle: Bundle
    schema: FeatureSchema
    class_names: list[str]
    artifact_sha256: str

    @classmethod
    def load(cls, artifacts: str, expected_sha256: str | None = None) -> LoadedModel:
        from glassbox.pipeline.artifacts import load_bundle  # verifies every SHA-256 before unpickling

        bundle = load_bundle(artifacts)
        manifest = bundle.manifest
        if expected_sha256 and manifest.artifact_sha256 != expected_sha256:
            # On a cluster a worker may see another copy of the store: refuse to mix model versions.
            raise InvalidInput(
                f"{artifacts} holds model {manifest.artifact_sha256[:12]} on this worker, "
                f"not {expected_sha256[:12]} as on the driver"
            )
        schema = FeatureSchema.from_manifest(manifest)
        return cls(bundle, schema, list(manifest.class_names), manifest.artifact_sha256)


def load_anchors(model: LoadedModel, params: dict[str, Any]) -> RowExplainer:
    """AnchorTabular with the bundle's in-process fast path as its predictor (no HTTP per row)."""
    import logging

    from glassbox.explain.core import DeterministicExplainer
    from glassbox.explain.params import ExplainParams

    # alibi warns once per row that found no anchor above the threshold: the precision says it.
    logging.getLogger("alibi.explainers.anchors.anchor_base").setLevel(logging.ERROR)
    explain_params = ExplainParams.parse(params)
    explainer = DeterministicExplainer(
        model.bundle.load_explainer(bind=False),
        model.bundle.predict,
        model.schema,
        model.class_names,
        model.artifact_sha256,
    )

    def explain(instance: np.ndarray, seed: int) -> dict[str, Any]:
        record = explainer.explain(instance, explain_params, seed)
        raw = record.pop("raw")
        record.pop("instance")  # the batch's output has it once per row
        record.pop("model_version")  # likewise
        record.pop("methods", None)  # the batch record keys explanations by method already
        record["stats"].pop("seconds")  # wall time: the one part of the record that is not reproducible
        record["features"] = [model.schema.feature_names[int(j)] for j in raw.get("feature", [])]
        return record

    return explain


TOP_FEATURES = 4  # attributions: the features with the largest |value| count as the ones it names


def check_params(method: str, params: dict[str, Any]) -> None:
    """Refuse a built-in method's bad parameters now, on the driver, before any worker starts."""
    if method == "anchors":
        from glassbox.explain.params import ExplainParams

        ExplainParams.parse(params)
    elif method in ("attributions", "counterfactuals"):
        _method_options(params, method)


def _method_options(params: dict[str, Any], method: str) -> Any:
    from glassbox.contract.explanations import ExplainMethods

    try:
        return ExplainMethods.model_validate({**params, "method": [method]})
    except ValueError as exc:
        raise InvalidInput(f"bad {method} parameters: {exc}") from None


def _forest_methods(model: LoadedModel, params: dict[str, Any], method: str) -> tuple[Any, Any, Any]:
    """The explainer's options, its forest with cover and its explanations config, for ``method``.

    Attributions and counterfactuals are the explainer's own (``glassbox.explain.attributions`` and
    ``counterfactuals``), run here on the bundle's forest in process: a batch has no served model to
    ask, it *is* the model version it names."""
    from glassbox.explain.methods import explanation_config
    from glassbox.pipeline.compact import CompactPipeline
    from glassbox.pipeline.fastpath import COMPACT_FILE

    options = _method_options(params, method)
    if COMPACT_FILE not in model.bundle.manifest.files:
        raise InvalidInput(f"{method} needs a forest compiled to {COMPACT_FILE}; this model has none")
    blob = model.bundle.read_verified(COMPACT_FILE)
    compact = CompactPipeline.from_bytes(blob, COMPACT_FILE, with_cover=True)
    return options, compact, explanation_config(model.bundle.manifest)


def load_attributions(model: LoadedModel, params: dict[str, Any]) -> RowExplainer:
    """Path-dependent TreeSHAP and reason codes (``glassbox.explain.attributions.Attributor``)."""
    from glassbox.explain.attributions import Attributor
    from glassbox.pipeline.treeshap import TreeShap

    options, compact, config = _forest_methods(model, params, "attributions")
    attributor = Attributor(TreeShap(compact), model.schema, model.class_names, config["adverse_class"])

    def explain(instance: np.ndarray, seed: int) -> dict[str, Any]:
        attributions, reason_codes = attributor.explain(instance, options)
        values = attributions["values"]
        named = sorted((name for name in values if values[name] != 0), key=lambda n: (-abs(values[n]), n))
        return {
            "attributions": attributions,
            "reason_codes": reason_codes,
            "features": named[:TOP_FEATURES],
        }

    return explain


def load_counterfactuals(model: LoadedModel, params: dict[str, Any]) -> RowExplainer:
    """DiCE counterfactuals over the forest (``glassbox.explain.counterfactuals.CounterfactualFinder``);
    "features" are those the nearest counterfactual changes."""
    from glassbox.explain.counterfactuals import CounterfactualFinder

    options, compact, config = _forest_methods(model, params, "counterfactuals")

    def local_proba(rows: np.ndarray) -> np.ndarray:
        return compact.predict_proba(np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float64))

    train_rows = np.asarray(model.bundle.load_explainer(bind=False).samplers[0].train_data, dtype=np.float64)
    finder = CounterfactualFinder(
        train_rows, local_proba, model.schema, model.class_names, config["immutable"], config["increase_only"]
    )

    def explain(instance: np.ndarray, seed: int) -> dict[str, Any]:
        record = finder.find(instance, options.counterfactuals, seed, local_proba)
        nearest = record["items"][0]["changes"] if record["items"] else []
        return {"counterfactuals": record, "features": [change["feature"] for change in nearest]}

    return explain


BUILT_IN: dict[str, Loader] = {
    "anchors": load_anchors,
    "attributions": load_attributions,
    "counterfactuals": load_counterfactuals,
}


def resolve(name: str) -> Loader:
    """The loader of a built-in method or of ``package.module:function``; InvalidInput otherwise."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module_name, sep, function = name.partition(":")
    if not sep or not module_name or not function:
        raise InvalidInput(
            f"unknown method {name!r}: expected one of {sorted(BUILT_IN)} or package.module:function"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"method {name!r}: cannot import {module_name!r} ({exc})") from None
    loader = getattr(module, function, None)
    if not callable(loader):
        raise InvalidInput(f"method {name!r}: {module_name} has no function {function!r}")
    return loader


def check_names(names: list[str]) -> list[str]:
    """The methods in the order given, each once; every name resolvable (before any work starts)."""
    if not names:
        raise InvalidInput("no method given: pass --method (e.g. anchors)")
    unique = list(dict.fromkeys(names))
    for name in unique:
        resolve(name)
    return unique
