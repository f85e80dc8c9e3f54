"""Send a batch's most doubtful rows to people: the review queue, as ``source="batch-explain"`` records.

A row is doubtful when its anchor holds for few of the perturbed rows (low precision: the model's
decision is not explained by a simple rule), or when the methods that ran disagree on which features
matter (1 - Jaccard similarity of the features each names, averaged over pairs of methods). Rows are
ranked by lowest precision, then largest disagreement, then id, so the choice is reproducible.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from glassbox.contract.labels import Certainty
from glassbox.contract.records import intake_record, timestamp
from glassbox.contract.schema import FeatureSchema

SOURCE = "batch-explain"


def disagreement(explanations: dict[str, Any]) -> float | None:
    """Mean pairwise 1 - Jaccard of the methods' feature sets; None with fewer than two methods."""
    sets = [set(e["features"]) for e in explanations.values() if isinstance(e.get("features"), list)]
    if len(sets) < 2:
        return None
    distances = [1 - len(a & b) / len(a | b) if a | b else 0.0 for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(distances))


def anchor_precision(explanations: dict[str, Any]) -> float | None:
    anchors = explanations.get("anchors")
    return float(anchors["precision"]) if anchors else None


def select_for_review(
    records: Sequence[dict[str, Any]], top_k: int, max_precision: float | None = None
) -> list[dict[str, Any]]:
    """The ``top_k`` explained rows most in need of a person, most doubtful first."""
    scored = []
    for record in records:
        if record["errors"] or record["probabilities"] is None:
            continue
        precision = anchor_precision(record["explanations"])
        spread = disagreement(record["explanations"])
        if precision is None and spread is None:
            continue
        if max_precision is not None and precision is not None and precision > max_precision:
            continue
        key = (precision if precision is not None else 1.0, -(spread or 0.0), record["id"])
        scored.append((key, record))
    scored.sort(key=lambda item: item[0])
    return [record for _, record in scored[:top_k]]


def review_records(
    chosen: Sequence[dict[str, Any]], schema: FeatureSchema, model_name: str, run: str
) -> list[dict[str, Any]]:
    """Intake records for ``chosen`` (ids ``batch:<run>:<row id>``: a rerun sends the same ids)."""
    if not chosen:
        return []
    probabilities = np.array([[r["probabilities"][c] for c in schema.class_names] for r in chosen])
    certainty = Certainty.of(probabilities)
    created = timestamp()
    out = []
    for k, record in enumerate(chosen):
        row = [_encoded(schema, j, record["instance"][name]) for j, name in enumerate(schema.feature_names)]
        anchors = record["explanations"].get("anchors")
        item = intake_record(
            record_id=f"batch:{run}:{record['id']}",
            source=SOURCE,
            schema=schema,
            row=row,
            probabilities=probabilities[k].tolist(),
            certainty=certainty,
            index=k,
            model_name=model_name,
            model_version=record["model_version"],
            request_id=f"batch:{run}",
            created=created,
            metadata={
                "row_id": record["id"],
                "line": record["line"],
                "anchor_precision": anchor_precision(record["explanations"]),
                "disagreement": disagreement(record["explanations"]),
                "methods": sorted(record["explanations"]),
            },
        )
        if anchors:  # the review page shows the anchor, its precision and coverage
            item["explanation"] = {k: anchors[k] for k in ("anchor", "precision", "coverage", "prediction")}
        out.append(item)
    return out


def _encoded(schema: FeatureSchema, column: int, value: Any) -> float:
    """Back from the decoded instance (category names) to alibi's encoding."""
    return float(schema.category_codes[column][value]) if column in schema.categories else float(value)
