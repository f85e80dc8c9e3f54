"""Attributions and reason codes of one row, from the forest in the explainer's own verified bundle.

The values are path-dependent TreeSHAP (``glassbox.pipeline.treeshap``): exact for the forest, no
background sample, one value per feature. They describe the explainer's bundle, so before it answers
the served model is asked for the same row and must name the same ``artifact_sha256`` in its tags (or,
when it names none, give the same probability): otherwise ``VersionConflict`` (409), so an attribution
never describes another model version than the one that decided.

Reason codes are the features that pushed the score toward the adverse class (the training config's
``explanations.adverse_class``), strongest first, as data and as a sentence an applicant can read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from glassbox.contract.explanations import DEFINITION, ExplainMethods
from glassbox.contract.labels import argmax_like_sklearn
from glassbox.contract.schema import FeatureSchema
from glassbox.errors import Conflict
from glassbox.explain.remote import ModelMismatch, RemotePredictor

if TYPE_CHECKING:
    from glassbox.pipeline.treeshap import TreeShap

SAME_PROBABILITY = 1e-6  # served vs compact probability when the model names no artifact


class VersionConflict(Conflict):
    """The served model is not the version the explainer's forest is: its explanation would be wrong."""

    reason = "model_version_mismatch"


class ServedModel:
    """The deployed model, asked before attributions or counterfactuals are given for a row."""

    def __init__(self, predictor: RemotePredictor, local_proba: Callable[[np.ndarray], np.ndarray]):
        self.predictor = predictor
        self.local_proba = local_proba  # the explainer's own forest (the compact fast path)
        self.calls = 0

    def probabilities(self, row: np.ndarray) -> np.ndarray:
        """The served model's probabilities for ``row``; ``VersionConflict`` unless it is our version."""
        rows = np.asarray(row, dtype=np.float64).reshape(1, -1)
        probabilities = self.checked_proba(rows)[0]
        if self.predictor.last_artifact_sha256 is None:  # it names no artifact: it must answer as ours
            ours = self.local_proba(rows)[0]
            if np.abs(ours - probabilities).max() > SAME_PROBABILITY:
                raise VersionConflict(
                    f"the served model names no artifact_sha256 and gives {probabilities.tolist()} where the "
                    f"explainer's forest gives {ours.tolist()}: refusing to explain another model version"
                )
        return probabilities

    def checked_proba(self, rows: np.ndarray) -> np.ndarray:
        """``predict_proba`` of the served model; a model naming another artifact is a ``VersionConflict``."""
        self.calls += 1
        try:
            return self.predictor.predict_proba(np.atleast_2d(np.asarray(rows, dtype=np.float64)))
        except ModelMismatch as exc:
            raise VersionConflict(f"{exc.message}: refusing to explain another model version") from None


class Attributor:
    """TreeSHAP per row with reason codes, in the explainer's feature and class names."""

    def __init__(
        self,
        treeshap: TreeShap,
        schema: FeatureSchema,
        class_names: Sequence[str],
        adverse_class: str,
        protected: Sequence[str] = (),
    ):
        if len(class_names) != 2 or adverse_class not in class_names:
            raise ValueError(f"adverse class {adverse_class!r} is not one of two classes {list(class_names)}")
        self.treeshap = treeshap
        self.schema = schema
        self.class_names = list(class_names)
        self.feature_names = list(schema.feature_names)
        self.adverse_class = adverse_class
        self.protected = set(protected)  # flagged in reason codes: a reviewer should see it

    def explain(self, row: np.ndarray, options: ExplainMethods) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(attributions, reason_codes)`` records of one encoded row (docs/contracts.md)."""
        shap = self.treeshap.explain(row)
        positive = self.class_names[1]
        # Class 1's values; class 0's probability is 1 - p, so its values and base are the negatives.
        by_class = {
            positive: (shap.base_value, shap.values),
            self.class_names[0]: (1.0 - shap.base_value, -shap.values),
        }
        probabilities = np.array([1.0 - shap.probability, shap.probability])
        predicted = self.class_names[int(argmax_like_sklearn(probabilities[None])[0])]
        base, values = by_class[predicted]
        attributions: dict[str, Any] = {
            "definition": DEFINITION,
            "class": predicted,
            "probability": float(probabilities[self.class_names.index(predicted)]),
            "base_value": float(base),
            "values": self._named(values),
        }
        if options.attributions.classes == "all":
            attributions["by_class"] = {
                name: {"base_value": float(by_class[name][0]), "values": self._named(by_class[name][1])}
                for name in self.class_names
            }
        instance = self.schema.decode(np.asarray(row, dtype=np.float64))
        return attributions, self.reason_codes(
            by_class[self.adverse_class][1], instance, predicted, options.reason_codes.top_k
        )

    def reason_codes(
        self, toward_adverse: np.ndarray, instance: dict[str, Any], predicted: str, top_k: int
    ) -> dict[str, Any]:
        """The features that moved the score toward the adverse class, strongest first (ties by name)."""
        order = sorted(
            (i for i, value in enumerate(toward_adverse) if value > 0),
            key=lambda i: (-toward_adverse[i], self.feature_names[i]),
        )[:top_k]
        favourable = next(name for name in self.class_names if name != self.adverse_class)
        reasons = []
        for i in order:
            feature, value = self.feature_names[i], instance[self.feature_names[i]]
            contribution = float(toward_adverse[i])
            reasons.append(
                {
                    "feature": feature,
                    "value": value,
                    "contribution": contribution,
                    "protected": feature in self.protected,
                    "sentence": f"{feature} = {show(value)} lowered the approval score by {contribution:.2f}",
                }
            )
        return {
            "adverse_class": self.adverse_class,
            "adverse": predicted == self.adverse_class,
            "favourable_class": favourable,
            "reasons": reasons,
        }

    def _named(self, values: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.feature_names, values, strict=True)}


def show(value: Any) -> str:
    """A feature value as a person writes it: 0, not 0.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
