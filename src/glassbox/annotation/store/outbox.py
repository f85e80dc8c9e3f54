"""The claimed-outbox statements shared by the feedback outbox (``records``) and the webhook outbox.

An outbox row is ``pending`` and due at ``next_attempt_at``. A claim, in one short write transaction,
counts an attempt and moves ``next_attempt_at`` to the end of a lease, so no other sender (thread,
worker, replica) takes the row meanwhile (``skip_locked``: PostgreSQL's concurrent claimers skip each
other's rows; SQLite's ``BEGIN IMMEDIATE`` has one writer at a time). An outcome is recorded only while
the claim is still the sender's own: the row is still pending with the lease's ``next_attempt_at``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outbox:
    """Where an outbox lives: its table and the names of its columns."""

    table: str
    state: str
    next_attempt_at: str
    attempts: str
    error: str
    # A further condition on the rows a claim takes (SQL over the table's columns; may be empty).
    claimable: str = ""


def claim_due(
    cur: Any, box: Outbox, skip_locked: str, limit: int, lease_seconds: float, max_attempts: int
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due rows for ``lease_seconds``, oldest due first; returns them (``*``).

    Rows whose every attempt was claimed without an outcome (their sender died each time) go dead
    here instead of being claimed again.
    """
    now = time.time()
    due = f"{box.state} = 'pending' AND {box.next_attempt_at} <= $1"
    also = f" AND {box.claimable}" if box.claimable else ""
    cur.execute(
        f"UPDATE {box.table} SET {box.state} = 'dead', {box.error} = COALESCE({box.error}, "
        f"'claimed ' || {box.attempts} || ' times without an outcome (the sender stopped)') "
        f"WHERE id IN (SELECT id FROM {box.table} WHERE {due} AND {box.attempts} >= $2{skip_locked})",
        (now, max_attempts),
    )
    return cur.execute(
        f"UPDATE {box.table} SET {box.attempts} = {box.attempts} + 1, {box.next_attempt_at} = $3 "
        f"WHERE id IN (SELECT id FROM {box.table} WHERE {due}{also} "
        f"ORDER BY {box.next_attempt_at}, id LIMIT $2{skip_locked}) RETURNING *",
        (now, limit, now + lease_seconds),
    ).fetchall()


def finish_claim(
    cur: Any, box: Outbox, claimed: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any] | None:
    """Set ``values`` (column: value) on a claimed row if the claim is still this sender's.

    Returns the row's new state as ``{"state": ...}``, or None if the claim had lapsed.
    """
    columns = list(values)
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=1))
    n = len(columns)
    return cur.execute(
        f"UPDATE {box.table} SET {sets} WHERE id = ${n + 1} AND {box.state} = 'pending' "
        f"AND {box.next_attempt_at} = ${n + 2} RETURNING {box.state} AS state",
        (*values.values(), claimed["id"], claimed[box.next_attempt_at]),
    ).fetchone()


def release_claims(cur: Any, box: Outbox, claimed: Sequence[dict[str, Any]]) -> None:
    """Hand back claimed rows that were not attempted (a stopping sender): due now, attempt uncounted."""
    for row in claimed:
        cur.execute(
            f"UPDATE {box.table} SET {box.attempts} = {box.attempts} - 1, {box.next_attempt_at} = $1 "
            f"WHERE id = $2 AND {box.state} = 'pending' AND {box.next_attempt_at} = $3",
            (time.time(), row["id"], row[box.next_attempt_at]),
        )
