"""One row's explanation record from the methods a request names: anchors, attributions, counterfactuals.

Anchors keep their record as it always was (``core``); the other methods add their keys beside it, or
beside the row's decoded instance, prediction and model version when anchors were not asked for
(docs/contracts.md, "Explainer response"). Attributions and counterfactuals first ask the served
model for the row (``ServedModel``): it must be the version the explainer's forest is, and its
prediction is the record's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from glassbox.contract.explanations import METHODS, ExplainMethods
from glassbox.contract.labels import argmax_like_sklearn
from glassbox.errors import Conflict
from glassbox.explain.params import ExplainParams

if TYPE_CHECKING:
    from glassbox.explain.attributions import Attributor, ServedModel
    from glassbox.explain.core import DeterministicExplainer
    from glassbox.explain.counterfactuals import CounterfactualFinder


class MethodUnavailable(Conflict):
    """This explainer cannot run the method for its model (e.g. a forest saved without its cover)."""

    reason = "method_unavailable"


class MethodRunner:
    """Composes records; ``attributor``/``finder`` are None when the bundle cannot support them."""

    def __init__(
        self,
        anchors: DeterministicExplainer,
        served: ServedModel | None,
        attributor: Attributor | None,
        finder: CounterfactualFinder | None,
        unavailable: dict[str, str] | None = None,
    ):
        self.anchors = anchors
        self.served = served
        self.attributor = attributor
        self.finder = finder
        self.unavailable = unavailable or {}  # method -> why it cannot run here

    def check(self, methods: ExplainMethods) -> None:
        """Refuse at once (409) a method this explainer cannot run, before any job is queued."""
        for method in methods.method:
            if method in self.unavailable:
                raise MethodUnavailable(f"method {method!r} is not available: {self.unavailable[method]}")

    def explain(
        self, row: np.ndarray, methods: ExplainMethods, params: ExplainParams, seed: int
    ) -> dict[str, Any]:
        self.check(methods)
        start = time.perf_counter()
        names = list(methods.method)
        if "anchors" in names:
            record = self.anchors.explain(row, params, seed)
        else:
            record = {
                "instance": self.anchors.schema.decode(np.asarray(row, dtype=np.float64)),
                "model_version": self.anchors.model_version,
                "seed": seed,
                "stats": {},
            }
        record["methods"] = names
        stats = dict(record.get("stats") or {})
        if "attributions" in names or "counterfactuals" in names:
            assert self.served is not None  # else ``check`` refused
            calls_before = self.served.calls
            self.served.local_proba(row)  # a value the forest refuses is the caller's 400, not the model's
            probabilities = self.served.probabilities(row)
            record["prediction"] = self.anchors.class_names[int(argmax_like_sklearn(probabilities[None])[0])]
            if "attributions" in names:
                assert self.attributor is not None
                began = time.perf_counter()
                record["attributions"], record["reason_codes"] = self.attributor.explain(row, methods)
                stats["attributions_seconds"] = time.perf_counter() - began
            if "counterfactuals" in names:
                assert self.finder is not None
                began = time.perf_counter()
                record["counterfactuals"] = self.finder.find(
                    row, methods.counterfactuals, seed, self.served.checked_proba
                )
                stats["counterfactuals_seconds"] = time.perf_counter() - began
            stats["served_model_calls"] = self.served.calls - calls_before
        stats["total_seconds"] = time.perf_counter() - start
        record["stats"] = stats
        return record


def build_runner(
    bundle: Any, anchors: DeterministicExplainer, predictor: Any, enabled: Sequence[str] = METHODS
) -> MethodRunner:
    """The methods beside anchors for a verified bundle; a method the bundle cannot support, or that
    ``enabled`` (``GLASSBOX_EXPLAINER_METHODS``) leaves out, is refused (409, naming why) rather than
    failing the explainer's start."""
    manifest = bundle.manifest
    why_off = "not loaded by this explainer (GLASSBOX_EXPLAINER_METHODS)"
    off = {method: why_off for method in METHODS if method not in enabled}
    if "attributions" in off and "counterfactuals" in off:  # anchors alone: no forest, numba nor DiCE
        return MethodRunner(anchors, None, None, None, off)
    from glassbox.explain.attributions import Attributor, ServedModel
    from glassbox.pipeline.compact import CompactPipeline  # numba (and llvmlite): ~100 MiB of PSS
    from glassbox.pipeline.fastpath import COMPACT_FILE
    from glassbox.pipeline.treeshap import NoCover, TreeShap

    if COMPACT_FILE not in manifest.files:
        why = "the model is not a forest compiled to compact.npz (attributions and counterfactuals need it)"
        return MethodRunner(anchors, None, None, None, {"attributions": why, "counterfactuals": why})
    config = explanation_config(manifest)
    # One copy of the forest, with its cover: TreeSHAP walks it, DiCE scores candidates on it.
    compact = CompactPipeline.from_bytes(bundle.read_verified(COMPACT_FILE), COMPACT_FILE, with_cover=True)

    def local_proba(rows: np.ndarray) -> np.ndarray:
        return compact.predict_proba(np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float64))

    unavailable: dict[str, str] = dict(off)
    served = ServedModel(predictor, local_proba)
    train_rows = np.asarray(anchors.explainer.samplers[0].train_data, dtype=np.float64)
    attributor = None
    if "attributions" not in off:
        try:
            treeshap = TreeShap(compact)
            treeshap.explain(train_rows[0])  # compile (or load numba's cache) now, not in the first request
            attributor = Attributor(
                treeshap,
                anchors.schema,
                anchors.class_names,
                config["adverse_class"],
                manifest.protected_attributes,
            )
        except NoCover as exc:
            unavailable["attributions"] = exc.message
    finder = None
    if "counterfactuals" not in off:
        try:
            from glassbox.explain.counterfactuals import CounterfactualFinder

            finder = CounterfactualFinder(
                train_rows,
                local_proba,
                anchors.schema,
                anchors.class_names,
                config["immutable"],
                config["increase_only"],
            )
        except ImportError as exc:  # the image was built without dice-ml
            unavailable["counterfactuals"] = f"dice-ml is not installed ({exc})"
    return MethodRunner(anchors, served, attributor, finder, unavailable)


def explanation_config(manifest: Any) -> dict[str, Any]:
    """The training config's ``explanations`` section with its defaults (bundles from before it had none)."""
    section = dict((manifest.training_config or {}).get("explanations") or {})
    negative = [name for name in manifest.class_names if name != manifest.positive_class]
    return {
        "adverse_class": section.get("adverse_class")
        or (negative[0] if negative else manifest.class_names[0]),
        "immutable": list(section.get("immutable", ["Race", "Sex", "Country"])),
        "increase_only": list(section.get("increase_only", ["Age"])),
    }
