"""The webhook tables: registrations, and the delivery outbox the sender claims rows from.

``enqueue_events`` runs inside the transaction of the change that causes the events (``base.py``'s
intake and ``add_response``), so an event is stored exactly when its change is: nothing is lost if the
process dies between the commit and the delivery. The outbox is claimed by the feedback outbox's
statements (``outbox.py``): a claim counts the attempt and moves ``next_attempt_at`` to the end
of a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite); the outcome
ends the lease: ``delivered``, ``pending`` again after a back-off, or ``dead`` with the last error.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from glassbox.annotation.store.outbox import Outbox, claim_due, finish_claim, release_claims
from glassbox.errors import NotFound

DELIVERY_STATES = ("pending", "delivered", "dead")
# The migration creating the webhook tables (store/migrations.py): an older schema has no events.
WEBHOOKS_MIGRATION = 6
# Rows per INSERT statement: 8 parameters each, under both servers' bound-parameter limits.
INSERT_CHUNK = 1000
OUTBOX = Outbox("webhook_deliveries", "state", "next_attempt_at", "attempts", "last_error")
DELIVERY_COLUMNS = "id, webhook_id, event_id, event, body, state, next_attempt_at, created_at"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _delivery_id() -> str:
    """Sortable by creation (nanosecond clock, then random): the claim sends a webhook's events in
    the order they happened, also those of one transaction (a response and the completion it caused)."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:12]}"


def event_body(event: str, event_id: str, now: float, data: dict[str, Any]) -> str:
    """The JSON every subscriber of one event receives (the same bytes at every attempt)."""
    return json.dumps(
        {"id": event_id, "type": event, "created_at": _iso(now), "data": data}, separators=(",", ":")
    )


def enqueue_events(cur: Any, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Write a delivery per (event, subscribed webhook) with ``cur``, in the caller's transaction.

    Returns the deliveries written. Costs one small SELECT when no webhook is registered.
    """
    if not events:
        return 0
    hooks = cur.execute("SELECT id, events FROM webhooks").fetchall()
    if not hooks:
        return 0
    now = time.time()
    rows = []
    for event, data in events:
        targets = [hook["id"] for hook in hooks if event in hook["events"].split(",")]
        if not targets:
            continue
        event_id = f"evt_{uuid.uuid4().hex}"
        body = event_body(event, event_id, now, data)
        rows += [(_delivery_id(), hook_id, event_id, event, body, "pending", now, now) for hook_id in targets]
    for start in range(0, len(rows), INSERT_CHUNK):
        params: list[Any] = []
        marks = []
        for row in rows[start : start + INSERT_CHUNK]:
            first = len(params)
            params += row
            marks.append("(" + ", ".join(f"${first + i + 1}" for i in range(len(row))) + ")")
        cur.execute(f"INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES {', '.join(marks)}", params)
    return len(rows)


def _webhook(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "events": row["events"].split(","),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
    }


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in (
        "id", "event_id", "event", "state", "attempts", "next_attempt_at", "last_status", "last_error",
        "created_at", "delivered_at",
    )}  # fmt: skip


class WebhookTables:
    """The webhook queries over a store (``SqlStore``): its transactions and its row-locking clause."""

    def __init__(self, store: Any):
        self.store = store

    # -- registrations ------------------------------------------------------------------------
    def create(self, url: str, events: Sequence[str], secret: str, created_by: str) -> dict[str, Any]:
        row = {
            "id": f"wh_{uuid.uuid4().hex[:16]}",
            "url": url,
            "events": ",".join(events),
            "secret": secret,
            "created_by": created_by,
            "created_at": time.time(),
        }
        with self.store.transaction(write=True) as cur:
            cur.execute(
                "INSERT INTO webhooks (id, url, events, secret, created_by, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                tuple(row.values()),
            )
        return _webhook(row)

    def list_all(self) -> list[dict[str, Any]]:
        with self.store.transaction() as cur:
            rows = cur.execute("SELECT * FROM webhooks ORDER BY created_at, id").fetchall()
        return [_webhook(row) for row in rows]

    def get(self, webhook_id: str, recent: int) -> dict[str, Any]:
        """A webhook with its ``recent`` newest deliveries and its delivery counts by state."""
        with self.store.transaction() as cur:
            row = cur.execute("SELECT * FROM webhooks WHERE id = $1", (webhook_id,)).fetchone()
            if row is None:
                raise NotFound(f"no webhook with id {webhook_id!r}")
            deliveries = cur.execute(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, id "
                "LIMIT $2",
                (webhook_id, recent),
            ).fetchall()
            counts = cur.execute(
                "SELECT state, COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = $1 GROUP BY state",
                (webhook_id,),
            ).fetchall()
        found = {count["state"]: int(count["n"]) for count in counts}
        return {
            **_webhook(row),
            "counts": {state: found.get(state, 0) for state in DELIVERY_STATES},
            "deliveries": [_delivery(delivery) for delivery in deliveries],
        }

    def delete(self, webhook_id: str) -> None:
        """Remove a webhook and its deliveries, pending ones included (nothing more is sent to it)."""
        with self.store.transaction(write=True) as cur:
            cur.execute("DELETE FROM webhook_deliveries WHERE webhook_id = $1", (webhook_id,))
            if (
                cur.execute("DELETE FROM webhooks WHERE id = $1 RETURNING id", (webhook_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no webhook with id {webhook_id!r}")

    def counts(self) -> dict[str, int]:
        """Deliveries by state, every state present (the outbox gauge)."""
        with self.store.transaction() as cur:
            rows = cur.execute(
                "SELECT state, COUNT(*) AS n FROM webhook_deliveries GROUP BY state"
            ).fetchall()
        found = {row["state"]: int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in DELIVERY_STATES}

    # -- the outbox (claimed like the feedback outbox: store/outbox.py) -------------------------
    def claim(self, limit: int, lease_seconds: float, max_attempts: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due deliveries for ``lease_seconds``, oldest first, with their webhook's
        URL and secret (``outbox.claim_due``: rows claimed ``max_attempts`` times without an outcome
        go dead instead)."""
        with self.store.transaction(write=True) as cur:
            rows = claim_due(cur, OUTBOX, self.store.skip_locked, limit, lease_seconds, max_attempts)
            if not rows:
                return []
            ids = sorted({row["webhook_id"] for row in rows})
            marks = ", ".join(f"${i}" for i in range(1, len(ids) + 1))
            hooks = {
                hook["id"]: hook
                for hook in cur.execute(
                    f"SELECT id, url, secret FROM webhooks WHERE id IN ({marks})", ids
                ).fetchall()
            }
        rows.sort(key=lambda row: row["id"])  # ids sort by creation (_delivery_id)
        return [
            {**row, "url": hooks[row["webhook_id"]]["url"], "secret": hooks[row["webhook_id"]]["secret"]}
            for row in rows
        ]

    def finish(
        self,
        claimed: dict[str, Any],
        *,
        status: int | None = None,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> str | None:
        """End a claim: delivered (no ``error``), due again at ``retry_at``, or dead (``error`` only).

        Returns the new state, or None if the claim had lapsed (another sender took the row).
        """
        if error is None:
            values = {"state": "delivered", "delivered_at": time.time(), "next_attempt_at": None}
        else:
            values = {"state": "pending" if retry_at is not None else "dead", "next_attempt_at": retry_at}
        values |= {"last_error": error[:1000] if error else None, "last_status": status}
        with self.store.transaction(write=True) as cur:
            row = finish_claim(cur, OUTBOX, claimed, values)
        return row["state"] if row else None

    def release(self, claimed: Sequence[dict[str, Any]]) -> None:
        """Hand back claimed rows not attempted (a stopping sender): due now, attempt uncounted."""
        if claimed:
            with self.store.transaction(write=True) as cur:
                release_claims(cur, OUTBOX, claimed)


# -- the events' data (documented in docs/annotation.md, "Webhooks") ------------------------------
def record_created(records: Sequence[Any], created: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """``record.created`` for each intake record whose id was new (the first of repeated ids)."""
    events, seen = [], set()
    for record in records:
        if record.id in created and record.id not in seen:
            seen.add(record.id)
            events.append(("record.created", {"record": {
                "id": record.id, "source": record.source, "model_name": record.model_name,
                "model_version": record.model_version, "predicted_label": record.predicted_label,
                "max_probability": record.certainty.max_probability, "request_id": record.request_id,
            }}))  # fmt: skip
    return events


def response_saved(
    record_id: str, user_name: str, kind: str, label: str | None, note: str, now: float, updated: bool
) -> tuple[str, dict[str, Any]]:
    """``response.created``, or ``response.updated`` when the user had answered the record before."""
    response = {"record_id": record_id, "user_name": user_name, "kind": kind, "label": label, "note": note,
                "created_at": now}  # fmt: skip
    return ("response.updated" if updated else "response.created", {"response": response})


def record_completed(record: dict[str, Any], final_label: str, now: float) -> tuple[str, dict[str, Any]]:
    """``record.completed``: the record settled on a final label."""
    return ("record.completed", {"record": {
        "id": record["id"], "source": record["source"], "model_version": record["model_version"],
        "predicted_label": record["predicted_label"], "request_id": record["request_id"],
        "status": "completed", "final_label": final_label, "completed_at": now,
    }})  # fmt: skip
