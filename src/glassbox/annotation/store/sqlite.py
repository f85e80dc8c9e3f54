"""The default store: one SQLite file in WAL mode (readers never wait for the writer)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from glassbox.annotation.store.base import SqlStore


class SQLiteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, pool_size: int = 4):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(pool_size)

    def _connect(self) -> Any:
        # Autocommit mode: transactions are opened explicitly, so BEGIN IMMEDIATE can take the write
        # lock up front instead of failing on upgrade under concurrent writers.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the process
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _begin(self, conn: Any, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
