"""The store interface, written once in the SQL that SQLite and PostgreSQL share.

The two implementations (``sqlite.py``, ``postgres.py``) only say how to hand out a connection inside
a transaction and how to lock rows; every query lives here, so the two cannot drift apart.

Placeholders are ``$1, $2, ...`` everywhere. PostgreSQL reads them natively (the store uses psycopg's
``RawCursor``, which sends the statement as written); SQLite reads ``$1`` as the parameter named "1",
bound from ``{"1": value}``. No statement text is ever rewritten, so a literal ``?`` or ``%`` in a
statement or a value is safe.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from glassbox.annotation.consensus import decide
from glassbox.annotation.records import RecordIn
from glassbox.annotation.store import explanations as explanation_queue
from glassbox.annotation.store.migrations import MIGRATION_TABLE, MIGRATIONS
from glassbox.annotation.store.outbox import Outbox, claim_due, finish_claim, release_claims
from glassbox.annotation.store.webhooks import (
    WEBHOOKS_MIGRATION,
    enqueue_events,
    record_completed,
    record_created,
    response_saved,
)
from glassbox.errors import Conflict, InvalidInput, NotFound

# Columns written by the intake, in order.
INSERT_COLUMNS = (
    "id", "source", "status", "model_name", "model_version", "predicted_label", "max_probability",
    "loss", "request_id", "timestamp", "payload", "explanation", "created_at",
    "explanation_state", "explanation_next_attempt_at",
)  # fmt: skip
# The migration adding the background explanations' columns (the last two of INSERT_COLUMNS).
EXPLANATIONS_MIGRATION = 8
# Rows per INSERT statement: 15,000 parameters, under both servers' bound-parameter limits.
INSERT_CHUNK = 1000

SORTS = {
    "least_certain": "max_probability ASC, created_at ASC, id ASC",
    "highest_loss": "(loss IS NULL) ASC, loss DESC, id ASC",
    "newest": "created_at DESC, id DESC",  # one direction: the index (created_at, id) read backwards
}
FEEDBACK_STATES = ("pending", "sent", "dead")
FEEDBACK_OUTBOX = Outbox(
    "records",
    "feedback_state",
    "feedback_next_attempt_at",
    "feedback_attempts",
    "feedback_error",
    claimable="status = 'completed'",  # as before the outbox was shared: completed records only
)


class Params(list):
    """The values bound to one statement; calling it with a value appends it and returns its ``$n``."""

    def __call__(self, value: Any) -> str:
        self.append(value)
        return f"${len(self)}"


class Cursor:
    """A DB-API cursor taking ``$n`` placeholders and returning rows as dicts."""

    def __init__(self, cursor: Any, bind: Callable[[Sequence[Any]], Any]):
        self._cursor = cursor
        self._bind = bind

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._cursor.execute(sql, self._bind(params))
        return self

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._cursor.fetchall()]

    def fetchone(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None


def record_row(record: RecordIn, now: float, explain: bool = False) -> tuple:
    """The intake's columns for one validated record.

    ``explain``: a record without an explanation is owed one, due now (``store/explanations.py``).
    """
    owed = explain and record.explanation is None
    state = "done" if record.explanation is not None else ("pending" if owed else None)
    payload = {
        "features": record.features,
        "decoded": record.decoded,
        "probabilities": record.probabilities,
        "certainty": record.certainty.model_dump(),
        "metadata": record.metadata,
    }
    return (
        record.id, record.source, "pending", record.model_name, record.model_version,
        record.predicted_label, record.certainty.max_probability,
        record.metadata.get("loss"), record.request_id,
        record.timestamp.isoformat().replace("+00:00", "Z"), json.dumps(payload, separators=(",", ":")),
        json.dumps(record.explanation) if record.explanation is not None else None, now,
        state, now if owed else None,
    )  # fmt: skip


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the API shows it: the intake's fields plus its review and feedback state."""
    payload = json.loads(row["payload"])
    explanation = json.loads(row["explanation"]) if row["explanation"] else None
    return {
        "id": row["id"],
        "source": row["source"],
        "status": row["status"],
        "model_name": row["model_name"],
        "model_version": row["model_version"],
        "predicted_label": row["predicted_label"],
        "request_id": row["request_id"],
        "timestamp": row["timestamp"],
        **payload,
        "explanation": explanation,
        # The principal reasons for an adverse decision (issue 13), when the explainer gave them.
        "reason_codes": explanation.get("reason_codes") if isinstance(explanation, dict) else None,
        "explanation_method": row.get("explanation_method"),
        "explanation_fetched_at": row.get("explanation_fetched_at"),
        "explanation_state": row.get("explanation_state"),
        "explanation_attempts": row.get("explanation_attempts", 0),
        "explanation_next_attempt_at": row.get("explanation_next_attempt_at"),
        "explanation_error": row.get("explanation_error"),
        "final_label": row["final_label"],
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
        "feedback_state": row["feedback_state"],
        "feedback_sent_at": row["feedback_sent_at"],
        "feedback_attempts": row["feedback_attempts"],
        "feedback_next_attempt_at": row["feedback_next_attempt_at"],
        "feedback_error": row["feedback_error"],
        "disagreement": bool(row["disagreement"]),
    }


def answer_key(kind: str, label: str | None) -> str:
    """What makes two answers the same: ``disagreement`` is two or more distinct keys on a record.

    The same expression as migration 4's ``kind || ':' || COALESCE(label, '')``.
    """
    return f"{kind}:{label or ''}"


class SqlStore(ABC):
    """Records, responses, users and settings in one SQL database."""

    dialect: str = ""
    # Appended to a SELECT that reads a row about to be changed (PostgreSQL); SQLite's write
    # transaction already holds the database lock.
    lock_row: str = ""
    # Appended to the SELECT that claims feedback rows: PostgreSQL's concurrent claimers skip each
    # other's rows instead of waiting; SQLite has one writer at a time (BEGIN IMMEDIATE), same effect.
    skip_locked: str = ""

    # -- what each database does differently -------------------------------------------------
    @abstractmethod
    def transaction(self, write: bool = False) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction, committed on success and rolled back on any error.

        ``write``: SQLite takes the write lock up front. A database that cannot be reached raises
        ``UpstreamUnavailable`` (HTTP 503), never a driver error.
        """

    @abstractmethod
    def close(self) -> None: ...

    def _before_migrations(self, cur: Cursor) -> None:  # noqa: B027 - SQLite: BEGIN IMMEDIATE is the lock
        """Serialise concurrent migrators (several workers starting at once) and prepare the schema."""

    # -- schema ----------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; returns the versions applied now."""
        applied_now = []
        with self.transaction(write=True) as cur:
            self._before_migrations(cur)
            cur.execute(MIGRATION_TABLE)
            done = {row["version"] for row in cur.execute("SELECT version FROM schema_migrations").fetchall()}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    (migration.version, migration.name, time.time()),
                )
                applied_now.append(migration.version)
        self._schema_versions = frozenset(done | set(applied_now))
        return applied_now

    # The versions migrate() found or applied; a store opened without migrating assumes the newest.
    _schema_versions: frozenset[int] = frozenset({WEBHOOKS_MIGRATION, EXPLANATIONS_MIGRATION})

    def _enqueue_events(self, cur: Cursor, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Webhook events, in the caller's transaction; none in a schema from before the webhooks."""
        if WEBHOOKS_MIGRATION in self._schema_versions:
            enqueue_events(cur, events)

    def schema_version(self) -> int:
        with self.transaction() as cur:
            row = cur.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
        return int(row["v"] or 0) if row else 0

    # -- intake ----------------------------------------------------------------------------
    def insert_records(self, records: Sequence[RecordIn], explain: bool = False) -> set[str]:
        """Insert the records whose id is new, in one transaction; returns the ids created.

        ``explain``: those without an explanation are owed one, computed in the background.
        """
        now = time.time()
        rows = [record_row(r, now, explain) for r in records]
        columns = INSERT_COLUMNS
        if EXPLANATIONS_MIGRATION not in self._schema_versions:  # a schema from before migration 8
            columns = INSERT_COLUMNS[:-2]
            rows = [row[:-2] for row in rows]
        created: set[str] = set()
        with self.transaction(write=True) as cur:
            for start in range(0, len(rows), INSERT_CHUNK):
                params = Params()
                values = ", ".join(
                    "(" + ", ".join(params(value) for value in row) + ")"
                    for row in rows[start : start + INSERT_CHUNK]
                )
                sql = (
                    f"INSERT INTO records ({', '.join(columns)}) VALUES {values} "
                    "ON CONFLICT (id) DO NOTHING RETURNING id"
                )
                created.update(row["id"] for row in cur.execute(sql, params).fetchall())
            self._enqueue_events(cur, record_created(records, created))  # webhooks: in this transaction
        return created

    # -- reading ---------------------------------------------------------------------------
    def get_record(self, record_id: str) -> dict[str, Any]:
        with self.transaction() as cur:
            row = cur.execute("SELECT * FROM records WHERE id = $1", (record_id,)).fetchone()
            if row is None:
                raise NotFound(f"no record with id {record_id!r}")
            responses = cur.execute(
                "SELECT user_name, kind, label, note, created_at FROM responses WHERE record_id = $1 "
                "ORDER BY created_at",
                (record_id,),
            ).fetchall()
        return {**record_from_row(row), "responses": responses}

    def list_records(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        model_version: str | None = None,
        predicted_label: str | None = None,
        feedback_state: str | None = None,
        certainty_min: float | None = None,
        certainty_max: float | None = None,
        has_disagreement: bool | None = None,
        sort: str = "least_certain",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of records matching every given filter, and how many match in all.

        The one query behind ``GET /api/v1/records`` and the review page's list view.
        """
        if sort not in SORTS:
            raise InvalidInput(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        where, params = [], Params()
        for column, value in (
            ("status", status),
            ("source", source),
            ("model_version", model_version),
            ("predicted_label", predicted_label),
            ("feedback_state", feedback_state),
        ):
            if value is not None:
                where.append(f"{column} = {params(value)}")
        if certainty_min is not None:
            where.append(f"max_probability >= {params(certainty_min)}")
        if certainty_max is not None:
            where.append(f"max_probability <= {params(certainty_max)}")
        if has_disagreement is not None:
            where.append(f"disagreement = {1 if has_disagreement else 0}")  # a literal: the partial index
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self.transaction() as cur:
            total = cur.execute(f"SELECT COUNT(*) AS n FROM records {clause}", params).fetchone()["n"]
            page = Params(params)
            window = f"LIMIT {page(limit)} OFFSET {page(offset)}"
            rows = cur.execute(
                f"SELECT * FROM records {clause} ORDER BY {SORTS[sort]} {window}", page
            ).fetchall()
        return [record_from_row(row) for row in rows], int(total)

    def next_for(self, user_name: str) -> tuple[dict[str, Any] | None, int]:
        """The least certain pending record this user has not answered, and how many such remain."""
        unanswered = (
            "FROM records WHERE status = 'pending' AND NOT EXISTS "
            "(SELECT 1 FROM responses WHERE responses.record_id = records.id AND responses.user_name = $1)"
        )
        with self.transaction() as cur:
            left = cur.execute(f"SELECT COUNT(*) AS n {unanswered}", (user_name,)).fetchone()["n"]
            row = cur.execute(
                f"SELECT * {unanswered} ORDER BY {SORTS['least_certain']} LIMIT 1", (user_name,)
            ).fetchone()
        return (record_from_row(row) if row else None), int(left)

    def counts(self) -> list[dict[str, Any]]:
        """Records per (status, source): the queue-depth gauge."""
        with self.transaction() as cur:
            return cur.execute(
                "SELECT status, source, COUNT(*) AS n FROM records GROUP BY status, source"
            ).fetchall()

    def reviewed_predictions(self) -> dict[str, int]:
        """Completed prediction records the model got right and wrong: accuracy on reviewed traffic."""
        with self.transaction() as cur:
            row = cur.execute(
                "SELECT SUM(CASE WHEN final_label = predicted_label THEN 1 ELSE 0 END) AS correct, "
                "SUM(CASE WHEN final_label <> predicted_label THEN 1 ELSE 0 END) AS wrong "
                "FROM records WHERE status = 'completed' AND source = 'prediction'"
            ).fetchone()
        return {"correct": int(row["correct"] or 0), "wrong": int(row["wrong"] or 0)}

    # -- review ----------------------------------------------------------------------------
    def set_explanation(self, record_id: str, explanation: dict[str, Any], method: str = "") -> None:
        """Store a fetched explanation with its method and fetch time (the lineage shows both)."""
        with self.transaction(write=True) as cur:
            cur.execute(
                "UPDATE records SET explanation = $1, explanation_method = $2, explanation_fetched_at = $3, "
                "explanation_state = 'done', explanation_error = NULL, explanation_next_attempt_at = NULL "
                "WHERE id = $4 AND explanation IS NULL",
                (json.dumps(explanation), method or None, time.time(), record_id),
            )

    # -- background explanations (store/explanations.py) --------------------------------------
    def claim_explanations(self, limit: int, lease_seconds: float, max_attempts: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` records due an explanation for ``lease_seconds``."""
        with self.transaction(write=True) as cur:
            rows = explanation_queue.claim(cur, self.skip_locked, limit, lease_seconds, max_attempts)
        return [record_from_row(row) for row in rows]

    def finish_explanation(
        self,
        claimed: dict[str, Any],
        *,
        explanation: dict[str, Any] | None = None,
        method: str = "",
        error: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        """End a claim: the explanation computed, or an error (due again at ``retry_at``, or never).

        False if the claim was no longer this worker's (its lease ran out and another took the record).
        """
        with self.transaction(write=True) as cur:
            if explanation is not None:
                return explanation_queue.finish_done(cur, claimed, explanation, method)
            return explanation_queue.finish_failed(cur, claimed, error or "unknown error", retry_at)

    def release_explanations(self, claimed: Sequence[dict[str, Any]]) -> None:
        """Hand back claimed records that were not attempted: due now, attempt uncounted."""
        if claimed:
            with self.transaction(write=True) as cur:
                explanation_queue.release(cur, claimed)

    def request_explanation(self, record_id: str) -> bool:
        """Owe a record without an explanation one, due now (also: retry one that failed for good)."""
        with self.transaction(write=True) as cur:
            return explanation_queue.request(cur, record_id)

    def explanation_counts(self) -> dict[str, int]:
        """Records by explanation state (pending, done, failed)."""
        with self.transaction() as cur:
            return explanation_queue.counts(cur)

    def lineage_records(self, record_or_request_id: str) -> list[dict[str, Any]]:
        """The record with this id, or every record of this prediction (Seldon puid), with responses."""
        with self.transaction() as cur:
            rows = cur.execute(
                "SELECT * FROM records WHERE id = $1 OR request_id = $1 ORDER BY id", (record_or_request_id,)
            ).fetchall()
        found = self.responses_of([row["id"] for row in rows])
        return [{**record_from_row(row), "responses": found[row["id"]]} for row in rows]

    def add_response(
        self,
        record_id: str,
        user_name: str,
        *,
        kind: str,
        label: str | None,
        note: str,
        min_submitted: int,
    ) -> dict[str, Any]:
        """Store a user's answer (replacing their earlier one) and complete the record if it is settled.

        A prediction record that completes owes the model its feedback: it enters the feedback outbox
        (``feedback_state = 'pending'``) in the same transaction, so no completion can miss it.
        Returns ``{"status", "final_label", "completed": bool, "time_to_label": seconds | None}``.
        """
        now = time.time()
        with self.transaction(write=True) as cur:
            row = cur.execute(f"SELECT * FROM records WHERE id = $1{self.lock_row}", (record_id,)).fetchone()
            if row is None:
                raise NotFound(f"no record with id {record_id!r}")
            if row["status"] != "pending":
                raise Conflict(f"record {record_id!r} is already {row['status']}; it takes no more responses")
            classes = list(json.loads(row["payload"])["probabilities"])
            if kind == "label" and label not in classes:
                raise InvalidInput(f"label {label!r} is not one of this record's classes {classes}")
            answered = cur.execute(
                "SELECT 1 AS found FROM responses WHERE record_id = $1 AND user_name = $2",
                (record_id, user_name),
            ).fetchone()
            cur.execute(
                "INSERT INTO responses (record_id, user_name, kind, label, note, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (record_id, user_name) DO UPDATE SET "
                "kind = excluded.kind, label = excluded.label, note = excluded.note, "
                "created_at = excluded.created_at",
                (record_id, user_name, kind, label, note, now),
            )
            # Webhook events, written in this transaction (store/webhooks.py).
            events = [response_saved(record_id, user_name, kind, label, note, now, answered is not None)]
            answers = cur.execute(
                "SELECT kind, label FROM responses WHERE record_id = $1", (record_id,)
            ).fetchall()
            disagreement = int(len({answer_key(a["kind"], a["label"]) for a in answers}) > 1)
            outcome = decide(answers, min_submitted)
            if outcome is None:
                cur.execute("UPDATE records SET disagreement = $1 WHERE id = $2", (disagreement, record_id))
                self._enqueue_events(cur, events)
                return {"status": "pending", "final_label": None, "completed": False, "time_to_label": None}
            status, final_label = outcome
            owes = status == "completed" and row["source"] == "prediction" and row["feedback_state"] is None
            cur.execute(
                "UPDATE records SET status = $1, final_label = $2, completed_at = $3, "
                "feedback_state = $4, feedback_next_attempt_at = $5, disagreement = $6 WHERE id = $7",
                (
                    status,
                    final_label,
                    now,
                    "pending" if owes else row["feedback_state"],
                    now if owes else row["feedback_next_attempt_at"],
                    disagreement,
                    record_id,
                ),
            )
            if status == "completed":
                events.append(record_completed(row, final_label, now))
            self._enqueue_events(cur, events)
        return {
            "status": status,
            "final_label": final_label,
            "completed": True,
            "time_to_label": now - row["created_at"],
        }

    def set_status(self, record_id: str, status: str) -> None:
        """An admin's override: discard a record, or send it back to pending (keeping its responses).

        Feedback not sent yet is no longer owed (the record has no settled label); sent or dead stays.
        """
        unowed = (
            "feedback_state = CASE WHEN feedback_state = 'pending' THEN NULL ELSE feedback_state END, "
            "feedback_next_attempt_at = CASE WHEN feedback_state = 'pending' THEN NULL "
            "ELSE feedback_next_attempt_at END"
        )
        with self.transaction(write=True) as cur:
            found = cur.execute(f"SELECT id FROM records WHERE id = $1{self.lock_row}", (record_id,))
            if found.fetchone() is None:
                raise NotFound(f"no record with id {record_id!r}")
            if status == "pending":
                cur.execute(
                    "UPDATE records SET status = 'pending', final_label = NULL, completed_at = NULL, "
                    f"{unowed} WHERE id = $1",
                    (record_id,),
                )
            else:
                cur.execute(
                    f"UPDATE records SET status = $1, completed_at = $2, {unowed} WHERE id = $3",
                    (status, time.time(), record_id),
                )

    # -- the lead's view ---------------------------------------------------------------------
    def progress(self) -> list[dict[str, Any]]:
        """Records per (source, model version, status)."""
        with self.transaction() as cur:
            return cur.execute(
                "SELECT source, model_version, status, COUNT(*) AS n FROM records "
                "GROUP BY source, model_version, status ORDER BY source, model_version, status"
            ).fetchall()

    def answer_counts(self) -> list[dict[str, Any]]:
        """Responses per (annotator, kind)."""
        with self.transaction() as cur:
            return cur.execute(
                "SELECT user_name, kind, COUNT(*) AS n FROM responses GROUP BY user_name, kind "
                "ORDER BY user_name, kind"
            ).fetchall()

    def responses_of(self, record_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Each record's responses, oldest first (a page's worth of ids)."""
        found: dict[str, list[dict[str, Any]]] = {record_id: [] for record_id in record_ids}
        if not record_ids:
            return found
        with self.transaction() as cur:
            ids = Params()
            marks = ", ".join(ids(record_id) for record_id in record_ids)
            for answer in cur.execute(
                "SELECT record_id, user_name, kind, label, note, created_at FROM responses "
                f"WHERE record_id IN ({marks}) ORDER BY created_at",
                ids,
            ).fetchall():
                found[answer.pop("record_id")].append(answer)
        return found

    def facets(self, limit: int = 200) -> dict[str, list[str]]:
        """The sources, model versions and predicted labels present: the list view's choices."""
        with self.transaction() as cur:
            return {
                column: [
                    row["v"]
                    for row in cur.execute(
                        f"SELECT DISTINCT {column} AS v FROM records ORDER BY {column} LIMIT $1", (limit,)
                    ).fetchall()
                ]
                for column in ("source", "model_version", "predicted_label")
            }

    def answers(self) -> list[dict[str, Any]]:
        """Every response with its record's final label: the agreement's input."""
        with self.transaction() as cur:
            return cur.execute(
                "SELECT responses.record_id, responses.user_name, responses.kind, responses.label, "
                "records.final_label FROM responses JOIN records ON records.id = responses.record_id "
                "ORDER BY responses.record_id, responses.user_name"
            ).fetchall()

    def iter_reviewed(self, statuses: Sequence[str], page: int = 1000) -> Iterator[dict[str, Any]]:
        """Records in the given statuses with their responses, page by page (exports stay streaming)."""
        last = ""
        while True:
            with self.transaction() as cur:
                params = Params()
                marks = ", ".join(params(s) for s in statuses)
                rows = cur.execute(
                    f"SELECT * FROM records WHERE status IN ({marks}) AND id > {params(last)} "
                    f"ORDER BY id LIMIT {params(page)}",
                    params,
                ).fetchall()
                if not rows:
                    return
                ids = Params()
                responses: dict[str, list] = {row["id"]: [] for row in rows}
                for answer in cur.execute(
                    "SELECT record_id, user_name, kind, label, note, created_at FROM responses "
                    f"WHERE record_id IN ({', '.join(ids(row['id']) for row in rows)}) ORDER BY created_at",
                    ids,
                ).fetchall():
                    responses[answer.pop("record_id")].append(answer)
            for row in rows:
                yield {**record_from_row(row), "responses": responses[row["id"]]}
            last = rows[-1]["id"]

    # -- feedback outbox -------------------------------------------------------------------
    # A prediction record that completes gets feedback_state 'pending' and is due at once. A sender
    # claims due rows: one short transaction counts the attempt and moves feedback_next_attempt_at
    # to the end of a lease, so no other sender (thread, worker, replica) takes them meanwhile; a
    # sender that dies lets its lease run out and the rows come due again. The outcome ends the
    # lease: 'sent', 'pending' with a back-off, or 'dead' with the error.

    def claim_feedback(self, limit: int, lease_seconds: float, max_attempts: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due rows for ``lease_seconds``, oldest due first.

        Rows whose every attempt was claimed without an outcome (their sender died each time) go
        dead here instead of being claimed again.
        """
        with self.transaction(write=True) as cur:
            rows = claim_due(cur, FEEDBACK_OUTBOX, self.skip_locked, limit, lease_seconds, max_attempts)
        rows.sort(key=lambda row: (row["completed_at"] or 0.0, row["id"]))
        return [record_from_row(row) for row in rows]

    def finish_feedback(
        self, claimed: dict[str, Any], *, error: str | None = None, retry_at: float | None = None
    ) -> str | None:
        """End a claim: sent (no ``error``), due again at ``retry_at``, or dead (``error``, no ``retry_at``).

        Returns the row's new state, or None if the claim was no longer this sender's (its lease ran
        out and someone else claimed the row, or an admin reopened the record).
        """
        if error is None:
            values = {"feedback_state": "sent", "feedback_sent_at": time.time()}
            values |= {"feedback_next_attempt_at": None, "feedback_error": None}
        else:
            state = "pending" if retry_at is not None else "dead"
            values = {"feedback_state": state, "feedback_sent_at": None}
            values |= {"feedback_next_attempt_at": retry_at, "feedback_error": error[:1000]}
        with self.transaction(write=True) as cur:
            row = finish_claim(cur, FEEDBACK_OUTBOX, claimed, values)
        return row["state"] if row else None

    def release_feedback(self, claimed: Sequence[dict[str, Any]]) -> None:
        """Hand back claimed rows that were not attempted (a stopping sender): due now, attempt uncounted."""
        if claimed:
            with self.transaction(write=True) as cur:
                release_claims(cur, FEEDBACK_OUTBOX, claimed)

    def feedback_counts(self) -> dict[str, int]:
        """Rows of the feedback outbox by state (every state present)."""
        with self.transaction() as cur:
            rows = cur.execute(
                "SELECT feedback_state, COUNT(*) AS n FROM records WHERE feedback_state IS NOT NULL "
                "GROUP BY feedback_state"
            ).fetchall()
        found = {row["feedback_state"]: int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in FEEDBACK_STATES}

    # -- users -----------------------------------------------------------------------------
    def create_user(self, name: str, role: str, key_hash: str) -> None:
        """A new user; ``Conflict`` if the name (or key) exists, also when two processes race."""
        with self.transaction(write=True) as cur:
            created = cur.execute(
                "INSERT INTO users (name, role, key_hash, created_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING RETURNING name",
                (name, role, key_hash, time.time()),
            ).fetchone()
        if created is None:
            raise Conflict(f"user {name!r} already exists")

    def user_by_key_hash(self, key_hash: str) -> dict[str, Any] | None:
        """``{"name", "role", "active"}`` of the key's user (``active`` a bool), or None."""
        with self.transaction() as cur:
            row = cur.execute(
                "SELECT name, role, active FROM users WHERE key_hash = $1", (key_hash,)
            ).fetchone()
        return {**row, "active": bool(row["active"])} if row else None

    def user_by_name(self, name: str) -> dict[str, Any] | None:
        """A user with their session generation and creation time (what a page session is checked against)."""
        with self.transaction() as cur:
            row = cur.execute(
                "SELECT name, role, active, session_generation, created_at FROM users WHERE name = $1",
                (name,),
            ).fetchone()
        return {**row, "active": bool(row["active"])} if row else None

    def list_users(self) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            rows = cur.execute("SELECT name, role, active, created_at FROM users ORDER BY name").fetchall()
        return [{**row, "active": bool(row["active"])} for row in rows]

    def set_key_hash(self, name: str, key_hash: str) -> None:
        """Replace a user's key: the old one stops working with this commit."""
        with self.transaction(write=True) as cur:
            found = cur.execute(
                "UPDATE users SET key_hash = $1 WHERE name = $2 RETURNING name", (key_hash, name)
            ).fetchone()
        if found is None:
            raise NotFound(f"no user {name!r}")

    def end_sessions(self, name: str) -> None:
        """Sign a user out everywhere: every page session of an earlier generation is refused."""
        with self.transaction(write=True) as cur:
            found = cur.execute(
                "UPDATE users SET session_generation = session_generation + 1 WHERE name = $1 RETURNING name",
                (name,),
            ).fetchone()
        if found is None:
            raise NotFound(f"no user {name!r}")

    def update_user(
        self, name: str, *, role: str | None = None, active: bool | None = None
    ) -> dict[str, Any]:
        """Change a user's role and/or active flag; ``Conflict`` if that leaves no active owner.

        The active owners are read with their rows locked (PostgreSQL; SQLite's write lock covers it),
        so two owners demoting each other at once cannot both succeed. Deactivating also ends the
        user's page sessions.
        """
        with self.transaction(write=True) as cur:
            owners = cur.execute(
                f"SELECT name FROM users WHERE role = 'owner' AND active = 1{self.lock_row}"
            ).fetchall()
            row = cur.execute(f"SELECT * FROM users WHERE name = $1{self.lock_row}", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no user {name!r}")
            new_role = role if role is not None else row["role"]
            new_active = active if active is not None else bool(row["active"])
            was_owner = row["role"] == "owner" and bool(row["active"])
            if was_owner and not (new_role == "owner" and new_active) and len(owners) <= 1:
                raise Conflict(f"user {name!r} is the last active owner; make another owner first")
            ended = 1 if bool(row["active"]) and not new_active else 0
            updated = cur.execute(
                "UPDATE users SET role = $1, active = $2, session_generation = session_generation + $3 "
                "WHERE name = $4 RETURNING name, role, active, created_at",
                (new_role, int(new_active), ended, name),
            ).fetchone()
        return {**updated, "active": bool(updated["active"])}

    def delete_user(self, name: str) -> None:
        with self.transaction(write=True) as cur:
            if cur.execute("DELETE FROM users WHERE name = $1 RETURNING name", (name,)).fetchone() is None:
                raise NotFound(f"no user {name!r}")

    def count_role(self, role: str) -> int:
        with self.transaction() as cur:
            row = cur.execute("SELECT COUNT(*) AS n FROM users WHERE role = $1", (role,)).fetchone()
        return int(row["n"])

    # -- settings --------------------------------------------------------------------------
    def get_settings(self) -> dict[str, str]:
        with self.transaction() as cur:
            return {
                row["key"]: row["value"] for row in cur.execute("SELECT key, value FROM settings").fetchall()
            }

    def put_setting(self, key: str, value: str) -> None:
        with self.transaction(write=True) as cur:
            cur.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
