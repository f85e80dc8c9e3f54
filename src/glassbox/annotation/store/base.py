"""The store interface, written once in the SQL that SQLite and PostgreSQL share.

The two implementations (``sqlite.py``, ``postgres.py``) only say how to connect, how to open a
write transaction and how to lock a row; every query lives here, so the two cannot drift apart.
Queries use ``?`` placeholders; the PostgreSQL store rewrites them to ``%s``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from glassbox.annotation.consensus import decide
from glassbox.annotation.records import RecordIn
from glassbox.annotation.store.migrations import MIGRATION_TABLE, MIGRATIONS
from glassbox.errors import Conflict, InvalidInput, NotFound

# Columns written by the intake, in order.
INSERT_COLUMNS = (
    "id", "source", "status", "model_name", "model_version", "predicted_label", "max_probability",
    "loss", "request_id", "timestamp", "payload", "explanation", "created_at",
)  # fmt: skip
# Rows per INSERT statement: well under both servers' bound-parameter limits.
INSERT_CHUNK = 1000

SORTS = {
    "least_certain": "max_probability ASC, created_at ASC, id ASC",
    "highest_loss": "(loss IS NULL) ASC, loss DESC, id ASC",
    "newest": "created_at DESC, id ASC",
}


class _Pool:
    """A few connections shared by the server's worker threads (DB-API connections are not thread-safe)."""

    def __init__(self, connect: Callable[[], Any], size: int):
        self._connect = connect
        self._size = size
        self._created = 0
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                create = self._created < self._size
                self._created += create
            try:
                conn = self._connect() if create else self._idle.get()
            except BaseException:
                with self._lock:
                    self._created -= create
                raise
        try:
            yield conn
        except BaseException:
            if getattr(conn, "closed", False):  # a broken connection is dropped, not reused
                with self._lock:
                    self._created -= 1
                raise
            self._idle.put(conn)
            raise
        self._idle.put(conn)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Cursor:
    """A DB-API cursor that takes ``?`` placeholders and returns rows as dicts."""

    def __init__(self, cursor: Any, rewrite: Callable[[str], str]):
        self._cursor = cursor
        self._rewrite = rewrite

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._cursor.execute(self._rewrite(sql), tuple(params))
        return self

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._cursor.fetchall()]

    def fetchone(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None


def record_row(record: RecordIn, now: float) -> tuple:
    """The intake's columns for one validated record."""
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
    )  # fmt: skip


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the API shows it: the intake's fields plus its review state."""
    payload = json.loads(row["payload"])
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
        "explanation": json.loads(row["explanation"]) if row["explanation"] else None,
        "final_label": row["final_label"],
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
        "feedback_sent_at": row["feedback_sent_at"],
        "feedback_attempts": row["feedback_attempts"],
        "feedback_error": row["feedback_error"],
    }


class SqlStore(ABC):
    """Records, responses, users and settings in one SQL database."""

    dialect: str = ""

    def __init__(self, pool_size: int = 4):
        self._pool = _Pool(self._connect, pool_size)

    # -- what each database does differently -------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _begin(self, conn: Any, write: bool) -> None: ...

    @abstractmethod
    def _commit(self, conn: Any) -> None: ...

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    def _rewrite(self, sql: str) -> str:
        return sql

    # Appended to a SELECT that reads a row about to be changed (PostgreSQL); SQLite's write
    # transaction already holds the database lock.
    lock_row: str = ""

    def _lock_migrations(self, cur: _Cursor) -> None:  # noqa: B027 - SQLite: BEGIN IMMEDIATE is the lock
        """Serialise concurrent migrators (several workers starting at once)."""

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[_Cursor]:
        with self._pool.connection() as conn:
            self._begin(conn, write)
            try:
                yield _Cursor(conn.cursor(), self._rewrite)
            except BaseException:
                self._rollback(conn)
                raise
            self._commit(conn)

    def close(self) -> None:
        self._pool.close()

    # -- schema ----------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; returns the versions applied now."""
        applied_now = []
        with self.transaction(write=True) as cur:
            self._lock_migrations(cur)
            cur.execute(MIGRATION_TABLE)
            done = {row["version"] for row in cur.execute("SELECT version FROM schema_migrations").fetchall()}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
                applied_now.append(migration.version)
        return applied_now

    def schema_version(self) -> int:
        with self.transaction() as cur:
            row = cur.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
        return int(row["v"] or 0) if row else 0

    # -- intake ----------------------------------------------------------------------------
    def insert_records(self, records: Sequence[RecordIn]) -> set[str]:
        """Insert the records whose id is new, in one transaction; returns the ids created."""
        now = time.time()
        rows = [record_row(r, now) for r in records]
        created: set[str] = set()
        placeholders = "(" + ", ".join("?" * len(INSERT_COLUMNS)) + ")"
        with self.transaction(write=True) as cur:
            for start in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[start : start + INSERT_CHUNK]
                sql = (
                    f"INSERT INTO records ({', '.join(INSERT_COLUMNS)}) VALUES "
                    f"{', '.join([placeholders] * len(chunk))} ON CONFLICT (id) DO NOTHING RETURNING id"
                )
                flat = [value for row in chunk for value in row]
                created.update(row["id"] for row in cur.execute(sql, flat).fetchall())
        return created

    # -- reading ---------------------------------------------------------------------------
    def get_record(self, record_id: str) -> dict[str, Any]:
        with self.transaction() as cur:
            row = cur.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                raise NotFound(f"no record with id {record_id!r}")
            responses = cur.execute(
                "SELECT user_name, kind, label, note, created_at FROM responses WHERE record_id = ? "
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
        certainty_min: float | None = None,
        certainty_max: float | None = None,
        sort: str = "least_certain",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of records matching every given filter, and how many match in all."""
        if sort not in SORTS:
            raise InvalidInput(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        where, params = [], []
        for column, value in (
            ("status", status),
            ("source", source),
            ("model_version", model_version),
            ("predicted_label", predicted_label),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if certainty_min is not None:
            where.append("max_probability >= ?")
            params.append(certainty_min)
        if certainty_max is not None:
            where.append("max_probability <= ?")
            params.append(certainty_max)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self.transaction() as cur:
            total = cur.execute(f"SELECT COUNT(*) AS n FROM records {clause}", params).fetchone()["n"]
            rows = cur.execute(
                f"SELECT * FROM records {clause} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [record_from_row(row) for row in rows], int(total)

    def next_for(self, user_name: str) -> tuple[dict[str, Any] | None, int]:
        """The least certain pending record this user has not answered, and how many such remain."""
        unanswered = (
            "FROM records WHERE status = 'pending' AND NOT EXISTS "
            "(SELECT 1 FROM responses WHERE responses.record_id = records.id AND responses.user_name = ?)"
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
    def set_explanation(self, record_id: str, explanation: dict[str, Any]) -> None:
        with self.transaction(write=True) as cur:
            cur.execute(
                "UPDATE records SET explanation = ? WHERE id = ? AND explanation IS NULL",
                (json.dumps(explanation), record_id),
            )

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

        Returns ``{"status", "final_label", "completed": bool, "time_to_label": seconds | None}``.
        """
        now = time.time()
        with self.transaction(write=True) as cur:
            row = cur.execute(f"SELECT * FROM records WHERE id = ?{self.lock_row}", (record_id,)).fetchone()
            if row is None:
                raise NotFound(f"no record with id {record_id!r}")
            if row["status"] != "pending":
                raise Conflict(f"record {record_id!r} is already {row['status']}; it takes no more responses")
            classes = list(json.loads(row["payload"])["probabilities"])
            if kind == "label" and label not in classes:
                raise InvalidInput(f"label {label!r} is not one of this record's classes {classes}")
            cur.execute(
                "INSERT INTO responses (record_id, user_name, kind, label, note, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, user_name) DO UPDATE SET "
                "kind = excluded.kind, label = excluded.label, note = excluded.note, "
                "created_at = excluded.created_at",
                (record_id, user_name, kind, label, note, now),
            )
            answers = cur.execute(
                "SELECT kind, label FROM responses WHERE record_id = ?", (record_id,)
            ).fetchall()
            outcome = decide(answers, min_submitted)
            if outcome is None:
                return {"status": "pending", "final_label": None, "completed": False, "time_to_label": None}
            status, final_label = outcome
            cur.execute(
                "UPDATE records SET status = ?, final_label = ?, completed_at = ? WHERE id = ?",
                (status, final_label, now, record_id),
            )
        return {
            "status": status,
            "final_label": final_label,
            "completed": True,
            "time_to_label": now - row["created_at"],
        }

    def set_status(self, record_id: str, status: str) -> None:
        """An admin's override: discard a record, or send it back to pending (keeping its responses)."""
        with self.transaction(write=True) as cur:
            found = cur.execute("SELECT id FROM records WHERE id = ?", (record_id,)).fetchone()
            if found is None:
                raise NotFound(f"no record with id {record_id!r}")
            if status == "pending":
                cur.execute(
                    "UPDATE records SET status = 'pending', final_label = NULL, completed_at = NULL "
                    "WHERE id = ?",
                    (record_id,),
                )
            else:
                cur.execute(
                    "UPDATE records SET status = ?, completed_at = ? WHERE id = ?",
                    (status, time.time(), record_id),
                )

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
        marks = ", ".join("?" * len(statuses))
        last = ""
        while True:
            with self.transaction() as cur:
                rows = cur.execute(
                    f"SELECT * FROM records WHERE status IN ({marks}) AND id > ? ORDER BY id LIMIT ?",
                    [*statuses, last, page],
                ).fetchall()
                if not rows:
                    return
                ids = [row["id"] for row in rows]
                responses: dict[str, list] = {i: [] for i in ids}
                for answer in cur.execute(
                    "SELECT record_id, user_name, kind, label, note FROM responses "
                    f"WHERE record_id IN ({', '.join('?' * len(ids))}) ORDER BY created_at",
                    ids,
                ).fetchall():
                    responses[answer.pop("record_id")].append(answer)
            for row in rows:
                yield {**record_from_row(row), "responses": responses[row["id"]]}
            last = rows[-1]["id"]

    # -- feedback --------------------------------------------------------------------------
    def feedback_due(self, limit: int = 100) -> list[dict[str, Any]]:
        """Completed prediction records whose feedback has not reached the model yet."""
        with self.transaction() as cur:
            rows = cur.execute(
                "SELECT * FROM records WHERE status = 'completed' AND source = 'prediction' "
                "AND feedback_sent_at IS NULL ORDER BY completed_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [record_from_row(row) for row in rows]

    def mark_feedback(self, record_id: str, *, sent: bool, error: str = "") -> None:
        with self.transaction(write=True) as cur:
            cur.execute(
                "UPDATE records SET feedback_attempts = feedback_attempts + 1, feedback_sent_at = ?, "
                "feedback_error = ? WHERE id = ?",
                (time.time() if sent else None, error or None, record_id),
            )

    # -- users -----------------------------------------------------------------------------
    def create_user(self, name: str, role: str, key_hash: str) -> None:
        with self.transaction(write=True) as cur:
            if cur.execute("SELECT name FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"user {name!r} already exists")
            cur.execute(
                "INSERT INTO users (name, role, key_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, role, key_hash, time.time()),
            )

    def user_by_key_hash(self, key_hash: str) -> dict[str, Any] | None:
        with self.transaction() as cur:
            return cur.execute("SELECT name, role FROM users WHERE key_hash = ?", (key_hash,)).fetchone()

    def list_users(self) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            return cur.execute("SELECT name, role, created_at FROM users ORDER BY name").fetchall()

    def delete_user(self, name: str) -> None:
        with self.transaction(write=True) as cur:
            if not cur.execute("SELECT name FROM users WHERE name = ?", (name,)).fetchone():
                raise NotFound(f"no user {name!r}")
            cur.execute("DELETE FROM users WHERE name = ?", (name,))

    def count_role(self, role: str) -> int:
        with self.transaction() as cur:
            return int(cur.execute("SELECT COUNT(*) AS n FROM users WHERE role = ?", (role,)).fetchone()["n"])

    # -- settings --------------------------------------------------------------------------
    def get_settings(self) -> dict[str, str]:
        with self.transaction() as cur:
            return {
                row["key"]: row["value"] for row in cur.execute("SELECT key, value FROM settings").fetchall()
            }

    def put_setting(self, key: str, value: str) -> None:
        with self.transaction(write=True) as cur:
            cur.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
