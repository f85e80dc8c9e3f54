"""The default store: one SQLite file in WAL mode (readers never wait for the writer).

SQLite needs no server connection to keep alive: a few connections are reused LIFO by the server's
worker threads (a ``sqlite3`` connection must not be used by two threads at once), and write
transactions start with ``BEGIN IMMEDIATE`` so that the single writer is chosen up front.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from glassbox.annotation.store.base import Cursor, SqlStore
from glassbox.errors import UpstreamUnavailable


def _bind(params: Sequence[Any]) -> dict[str, Any]:
    # "$1" is the parameter named "1" to SQLite: the same statement text as PostgreSQL's.
    return {str(i): value for i, value in enumerate(params, start=1)}


class SQLiteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, pool_size: int = 4):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)  # at most pool_size connections in use

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are opened explicitly, so BEGIN IMMEDIATE can take the write
        # lock up front instead of failing on upgrade under concurrent writers.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may wait for another process
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the process
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Cursor]:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield Cursor(conn.cursor(), _bind)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if "locked" in str(exc) or "busy" in str(exc):
                    raise UpstreamUnavailable(f"SQLite database busy: {exc}") from exc
                raise
            finally:
                self._idle.put(conn)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
