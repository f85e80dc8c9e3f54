"""One prediction's lineage: request, prediction, explanations, answers, consensus and model feedback.

Built from a stored record (``store.base.record_from_row`` plus its responses) by one function, so the
API (``GET /api/v1/lineage/{id}``), the page (``/review/lineage/{id}``) and the export's
``lineage`` field cannot drift apart.
"""

from __future__ import annotations

from typing import Any

# What a record's ``explanation`` was computed with when the record does not say: the queue's
# explainer is Alibi's AnchorTabular (docs/contracts.md), and an anchor is its output's mark.
ANCHOR_METHOD = "AnchorTabular"


def explanation_method(explanation: dict[str, Any]) -> str:
    """The method of an explanation given at intake: AnchorTabular if it carries an anchor."""
    return ANCHOR_METHOD if "anchor" in explanation else "unknown"


def _explanations(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every explanation stored for the record (today at most one), with method, time and origin.

    One fetched by the queue carries the fetch time; one sent with the record at intake is dated by
    the record's arrival in the queue (``created_at``).
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
            "explanation": explanation,
        }
    ]


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
