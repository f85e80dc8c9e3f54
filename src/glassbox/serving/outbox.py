"""Durable outbox: records the annotation queue has not accepted yet, in SQLite on local disk.

SQLite because it is in the standard library, survives a SIGKILL of the worker (WAL journal), and
lets several processes (gunicorn workers, the gRPC server) share one file: each claims rows under a
short lease, so two senders rarely post the same record, and if they do the queue's intake is
idempotent by record id.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,            -- the record id: re-spilling a record never duplicates it
    body TEXT NOT NULL,             -- the record as JSON text, posted as is
    created_at REAL NOT NULL,
    claimed_until REAL NOT NULL DEFAULT 0
);
"""


WAL_RETRY_SECONDS = 30.0


def connect_wal(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, shared safely by several processes starting at once.

    Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked" at
    once (without its busy handler) when another process opens the same file in that instant: gunicorn
    workers booting together hit it. The pragma is retried until it holds.
    """
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + WAL_RETRY_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.01)


class Outbox:
    """A bounded table of pending records; every method is safe to call from any thread."""

    def __init__(self, directory: Path, max_records: int, filename: str = "outbox.sqlite3"):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / filename
        self.max_records = max_records
        self._lock = threading.Lock()
        # One connection per process, opened after fork (the component builds this in load()).
        self._db = connect_wal(self.path)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def add(self, records: list[tuple[str, str]]) -> tuple[int, int]:
        """Store (id, JSON) ``records``; returns (stored, dropped) — dropped only for lack of room."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                room = self.max_records - self._count()
                kept = records[: max(room, 0)]
                self._db.executemany(
                    "INSERT OR IGNORE INTO outbox (id, body, created_at) VALUES (?, ?, ?)",
                    [(record_id, body, now) for record_id, body in kept],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(kept), len(records) - len(kept)

    def claim(self, limit: int, lease_seconds: float = 60.0) -> list[tuple[str, str]]:
        """Up to ``limit`` oldest records nobody else holds, leased to this process for a while."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT id, body FROM outbox WHERE claimed_until < ? ORDER BY created_at, rowid LIMIT ?",
                    (now, limit),
                ).fetchall()
                self._db.executemany(
                    "UPDATE outbox SET claimed_until = ? WHERE id = ?",
                    [(now + lease_seconds, r[0]) for r in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [(record_id, body) for record_id, body in rows]

    def delete(self, ids: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def release(self, ids: list[str]) -> None:
        """Give claimed records back (a send failed) so the next attempt can take them."""
        with self._lock:
            self._db.executemany("UPDATE outbox SET claimed_until = 0 WHERE id = ?", [(i,) for i in ids])

    def depth(self) -> int:
        with self._lock:
            return self._count()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
