"""One prediction's lineage: request, prediction, explanations, answers, consensus and model feedback.

Built from a stored record (``store.base.record_from_row`` plus its responses) by one function, so the
API (``GET /api/v1/lineage/{id}``), the page (``/review/lineage/{id}``) and the export's
``lineage`` field cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from glassbox.annotation.explanations import ANCHOR_METHOD, method_of

__all__ = ["ANCHOR_METHOD", "explanation_method", "lineage_of"]


def explanation_method(explanation: dict[str, Any]) -> str:
    """The method of an explanation given at intake: AnchorTabular if it carries only an anchor, else
    the methods it names (``anchors+attributions+counterfactuals``)."""
    return method_of(explanation)


def _explanations(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every explanation stored for the record (today at most one), with method, time and origin.

    One fetched by the queue carries the fetch time; one sent with the record at intake is dated by
    the record's arrival in the queue (``created_at``). Its reason codes (issue 13), when the
    explainer gave them, are repeated beside it: a lender's principal reasons, as data and sentences.
    """
    explanation = record.get("explanation")
    if explanation is None:
        return []
    fetched_at = record.get("explanation_fetched_at")
    return [
        {
            "method": record.get("explanation_method") or explanation_method(explanation),
            "origin": "explainer" if fetched_at is not None else "intake",
            "computed_at": fetched_at if fetched_at is not None else record.get("created_at"),
            "reason_codes": explanation.get("reason_codes"),
            "explanation": explanation,
        }
    ]


def _explanation_state(record: dict[str, Any]) -> dict[str, Any]:
    """Where the background explanation stands: state (None = none asked for), attempts, last error."""
    state = record.get("explanation_state")
    due = state in ("pending", "failed")
    return {
        "state": state,
        "attempts": record.get("explanation_attempts", 0),
        "last_error": record.get("explanation_error"),
        "next_attempt_at": record.get("explanation_next_attempt_at") if due else None,
    }


def _feedback(record: dict[str, Any]) -> dict[str, Any]:
    """The record's row of the feedback outbox; ``state`` None when no feedback is owed."""
    state = record.get("feedback_state")
    reward = None
    if state is not None and record.get("final_label") is not None:
        reward = int(record["final_label"] == record["predicted_label"])  # as feedback.feedback_payload
    return {
        "state": state,
        "attempts": record.get("feedback_attempts", 0),
        "last_error": record.get("feedback_error"),
        "sent_at": record.get("feedback_sent_at"),
        "next_attempt_at": record.get("feedback_next_attempt_at") if state == "pending" else None,
        "reward": reward,
    }


def lineage_of(record: dict[str, Any]) -> dict[str, Any]:
    """The lineage of one stored record (with its ``responses``)."""
    return {
        "record_id": record["id"],
        "request_id": record["request_id"],
        "source": record["source"],
        "timestamp": record["timestamp"],
        "request": {"features": record["features"], "decoded": record.get("decoded") or {}},
        "prediction": {
            "model_name": record["model_name"],
            "model_version": record["model_version"],
            "predicted_label": record["predicted_label"],
            "probabilities": record["probabilities"],
            "certainty": record["certainty"],
        },
        "explanations": _explanations(record),
        "explanation_state": _explanation_state(record),
        "responses": [
            {
                "user_name": answer["user_name"],
                "answer": answer["label"] if answer["kind"] == "label" else "discard",
                "kind": answer["kind"],
                "label": answer["label"],
                "note": answer.get("note", ""),
                "created_at": answer.get("created_at"),
            }
            for answer in record.get("responses", [])
        ],
        "consensus": {
            "status": record["status"],
            "final_label": record.get("final_label"),
            "completed_at": record.get("completed_at"),
            "disagreement": bool(record.get("disagreement")),
        },
        "feedback": _feedback(record),
    }
