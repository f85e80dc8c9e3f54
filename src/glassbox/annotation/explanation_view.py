"""What the review page shows of a record's explanation, read from the stored JSON once per request.

Pure Python over the record dict (no database, no explainer): the template only lays it out. Any part
may be missing or malformed (an old anchor-only record, an explanation given at intake by a builder);
that part is then left out, never an error page. Shapes: docs/explain.md (anchors, attributions,
reason codes, counterfactuals).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

_NUMBER = (int, float)


@dataclass(frozen=True)
class Bar:
    """One feature's attribution: signed toward (positive) or against the predicted label."""

    feature: str
    value: float  # toward the predicted label when positive
    width: float  # percent of the half-axis: |value| / the largest |value|

    @property
    def toward(self) -> bool:
        return self.value >= 0


@dataclass(frozen=True)
class ExplanationView:
    state: str  # "done" | "pending" | "failed" | "none"
    error: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    anchor: dict[str, Any] | None = None  # clauses, precision, coverage, threshold, threshold_met
    anchored: dict[str, list[str]] = field(default_factory=dict)  # feature -> the clauses naming it
    bars: list[Bar] = field(default_factory=list)
    attribution: dict[str, Any] | None = None  # label, base_value, probability, definition
    reasons: dict[str, Any] | None = None  # adverse_class, adverse, sentences
    counterfactual: dict[str, Any] | None = None  # sentence, or message when none was found


def _number(value: Any) -> float | None:
    if isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def clause_features(clause: str, features: list[str]) -> list[str]:
    """The features an anchor clause names (``28.00 < Age <= 37.00``, ``Capital Gain <= 0.00``).

    A name counts when it stands alone (not inside a longer word); a longer matching name wins over
    one it contains (``Capital Gain`` before ``Gain``).
    """
    found: list[str] = []
    for name in sorted(features, key=len, reverse=True):
        if any(name in longer for longer in found):
            continue
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", clause):
            found.append(name)
    return found


def _anchor(explanation: dict[str, Any], features: list[str]) -> tuple[dict | None, dict[str, list[str]]]:
    clauses = explanation.get("anchor")
    if not isinstance(clauses, list):
        return None, {}
    clauses = [str(clause) for clause in clauses]
    anchored: dict[str, list[str]] = {}
    for clause in clauses:
        for name in clause_features(clause, features):
            anchored.setdefault(name, []).append(clause)
    precision = _number(explanation.get("precision"))
    threshold = _number(explanation.get("threshold"))
    params = explanation.get("params")
    if threshold is None and isinstance(params, dict):  # an explainer from before issue 13 echoed it
        threshold = _number(params.get("threshold"))
    met = explanation.get("threshold_met")
    if not isinstance(met, bool):  # None: neither said nor computable
        met = precision >= threshold if precision is not None and threshold is not None else None
    anchor = {
        "clauses": clauses,
        "precision": precision,
        "coverage": _number(explanation.get("coverage")),
        "threshold": threshold,
        "threshold_met": met,
    }
    return anchor, anchored


def _bars(explanation: dict[str, Any], predicted: str, classes: list[str]) -> tuple[list[Bar], dict | None]:
    """Attributions toward the predicted label, largest magnitude first.

    Values for another class of a two-class model are negated (what raises one lowers the other);
    for another class of a model with more classes there is no such reading, and none are shown.
    """
    attributions = explanation.get("attributions")
    values = attributions.get("values") if isinstance(attributions, dict) else None
    if not isinstance(values, dict) or not values:
        return [], None
    towards = attributions.get("class", predicted)
    if towards == predicted:
        sign = 1.0
    elif len(classes) == 2 and towards in classes:
        sign = -1.0
    else:
        return [], None
    signed = {str(name): sign * v for name, value in values.items() if (v := _number(value)) is not None}
    largest = max((abs(v) for v in signed.values()), default=0.0) or 1.0
    bars = [
        Bar(name, value, round(100 * abs(value) / largest, 1))
        for name, value in sorted(signed.items(), key=lambda item: (-abs(item[1]), item[0]))
    ]
    about = {
        "label": predicted,
        "class": towards,
        "base_value": _number(attributions.get("base_value")),
        "probability": _number(attributions.get("probability")),
        "definition": definition if isinstance(definition := attributions.get("definition"), str) else "",
    }
    return bars, about


def _list(value: Any) -> list[Any]:
    """A stored explanation's list, or nothing: whatever JSON was stored, the page renders."""
    return value if isinstance(value, list) else []


def _reasons(explanation: dict[str, Any]) -> dict[str, Any] | None:
    codes = explanation.get("reason_codes")
    if not isinstance(codes, dict):
        return None
    sentences = []
    for reason in _list(codes.get("reasons")):
        if isinstance(reason, dict) and isinstance(reason.get("sentence"), str):
            sentences.append(reason["sentence"])
        elif isinstance(reason, dict) and "feature" in reason:
            sentences.append(f"{reason['feature']} = {reason.get('value')}")
    return {
        "adverse_class": codes.get("adverse_class"),
        "adverse": bool(codes.get("adverse")),
        "sentences": sentences,
    }


def change_sentence(item: dict[str, Any]) -> str:
    """A counterfactual as one sentence, when the explainer gave none."""
    changes = [c for c in _list(item.get("changes")) if isinstance(c, dict)]
    what = ", ".join(f"{c.get('feature')} been {c.get('to')} instead of {c.get('from')}" for c in changes)
    outcome = f"the model would have predicted {item.get('prediction')}"
    probability = _number(item.get("probability"))
    if probability is not None:
        outcome += f" ({probability:.2f})"
    return f"Had {what}, {outcome}." if what else f"With no change, {outcome}."


def _counterfactual(explanation: dict[str, Any]) -> dict[str, Any] | None:
    found = explanation.get("counterfactuals")
    if not isinstance(found, dict):
        return None
    items = [item for item in _list(found.get("items")) if isinstance(item, dict)]
    if not found.get("found", bool(items)) or not items:
        message = found.get("message")
        return {"sentence": None, "message": message if isinstance(message, str) else "none found"}
    nearest = items[0]  # the explainer lists the nearest first
    sentence = nearest.get("sentence")
    return {
        "sentence": sentence if isinstance(sentence, str) and sentence else change_sentence(nearest),
        "message": None,
        "verified": nearest.get("verified"),
        "more": len(items) - 1,
    }


def explanation_view(record: dict[str, Any]) -> ExplanationView:
    """Everything the review page shows of ``record``'s explanation, or of why there is none yet."""
    explanation = record.get("explanation")
    state = record.get("explanation_state")
    status = {
        "error": record.get("explanation_error"),
        "attempts": int(record.get("explanation_attempts") or 0),
        "next_attempt_at": record.get("explanation_next_attempt_at"),
    }
    if not isinstance(explanation, dict):
        return ExplanationView(state=state if state in ("pending", "failed") else "none", **status)
    features = list(record.get("features") or {})
    classes = list(record.get("probabilities") or {})
    anchor, anchored = _anchor(explanation, features)
    bars, attribution = _bars(explanation, str(record.get("predicted_label")), classes)
    return ExplanationView(
        state="done",
        anchor=anchor,
        anchored=anchored,
        bars=bars,
        attribution=attribution,
        reasons=_reasons(explanation),
        counterfactual=_counterfactual(explanation),
    )
