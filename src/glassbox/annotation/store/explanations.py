"""The records table as the background explanations' work list (migration 8).

A record's ``explanation_state`` is NULL (none asked for: it came with its explanation or no explainer
was set), ``pending`` (due at ``explanation_next_attempt_at``, or being computed under a claim),
``done`` or ``failed`` (with ``explanation_error``; due again at ``explanation_next_attempt_at``, or
never when that is NULL). Claims work like the feedback outbox's (``store/outbox.py``): one short
write transaction counts an attempt and moves the due time to the end of a lease, so no other worker
or replica computes the same record meanwhile (PostgreSQL's ``SKIP LOCKED``; SQLite's single writer);
a worker that dies lets its lease run out and the record comes due again, so nothing is lost across a
restart. An outcome is written only while the claim is still the worker's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

EXPLANATION_STATES = ("pending", "done", "failed")
_DUE = "explanation_state IN ('pending', 'failed') AND explanation_next_attempt_at <= $1"
_STILL_MINE = "explanation_state = 'pending' AND explanation_next_attempt_at = $2 AND id = $3"


def claim(cur: Any, skip_locked: str, limit: int, lease_seconds: float, max_attempts: int) -> list[dict]:
    """Claim up to ``limit`` due records for ``lease_seconds``, oldest due first (rows as ``*``).

    A claimed record is ``pending`` again (a failed one keeps its last error until the outcome).
    Records claimed ``max_attempts`` times without an outcome (their worker died each time) fail for
    good here instead of being claimed again.
    """
    now = time.time()
    cur.execute(
        "UPDATE records SET explanation_state = 'failed', explanation_next_attempt_at = NULL, "
        "explanation_error = COALESCE(explanation_error, 'claimed ' || explanation_attempts || "
        "' times without an outcome (the worker stopped)') "
        f"WHERE id IN (SELECT id FROM records WHERE {_DUE} AND explanation_attempts >= $2{skip_locked})",
        (now, max_attempts),
    )
    return cur.execute(
        "UPDATE records SET explanation_state = 'pending', explanation_attempts = explanation_attempts + 1, "
        "explanation_next_attempt_at = $3 WHERE id IN (SELECT id FROM records WHERE "
        f"{_DUE} ORDER BY explanation_next_attempt_at, id LIMIT $2{skip_locked}) RETURNING *",
        (now, limit, now + lease_seconds),
    ).fetchall()


def finish_done(cur: Any, claimed: dict[str, Any], explanation: dict[str, Any], method: str) -> bool:
    """Store a computed explanation if the claim is still this worker's; False if it had lapsed."""
    return (
        cur.execute(
            "UPDATE records SET explanation = $1, explanation_state = 'done', explanation_method = $4, "
            "explanation_fetched_at = $5, explanation_error = NULL, explanation_next_attempt_at = NULL "
            f"WHERE {_STILL_MINE} RETURNING id",
            (
                json.dumps(explanation),
                claimed["explanation_next_attempt_at"],
                claimed["id"],
                method,
                time.time(),
            ),
        ).fetchone()
        is not None
    )


def finish_failed(cur: Any, claimed: dict[str, Any], error: str, retry_at: float | None) -> bool:
    """Record a failed attempt (due again at ``retry_at``; never when None); False if the claim lapsed."""
    return (
        cur.execute(
            "UPDATE records SET explanation_state = 'failed', explanation_error = $1, "
            f"explanation_next_attempt_at = $4 WHERE {_STILL_MINE} RETURNING id",
            (error[:1000], claimed["explanation_next_attempt_at"], claimed["id"], retry_at),
        ).fetchone()
        is not None
    )


def release(cur: Any, claimed: Sequence[dict[str, Any]]) -> None:
    """Hand back claimed records that were not attempted (a stopping worker): due now, attempt uncounted."""
    for row in claimed:
        cur.execute(
            "UPDATE records SET explanation_attempts = explanation_attempts - 1, "
            f"explanation_next_attempt_at = $1 WHERE {_STILL_MINE}",
            (time.time(), row["explanation_next_attempt_at"], row["id"]),
        )


def request(cur: Any, record_id: str) -> bool:
    """Ask for a record's explanation now: one with none and no request, or one that failed for good.

    Also a retry a reviewer asks for. Returns False if the record already has one, or one is due.
    """
    return (
        cur.execute(
            "UPDATE records SET explanation_state = 'pending', explanation_attempts = 0, "
            "explanation_next_attempt_at = $1 WHERE id = $2 AND explanation IS NULL AND "
            "(explanation_state IS NULL OR explanation_state = 'failed') RETURNING id",
            (time.time(), record_id),
        ).fetchone()
        is not None
    )


def counts(cur: Any) -> dict[str, int]:
    """Records by explanation state (every state present; records with none asked for are left out)."""
    rows = cur.execute(
        "SELECT explanation_state AS state, COUNT(*) AS n FROM records "
        "WHERE explanation_state IS NOT NULL GROUP BY explanation_state"
    ).fetchall()
    found = {row["state"]: int(row["n"]) for row in rows}
    return {state: found.get(state, 0) for state in EXPLANATION_STATES}
