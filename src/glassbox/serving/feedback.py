"""Durable record of the feedback (truth and reward) the component receives, in SQLite."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

from glassbox.serving.outbox import connect_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    truth TEXT,                    -- null when the feedback carried a reward only
    predicted TEXT,                -- null when the feedback carried no response to compare with
    reward REAL NOT NULL,
    model_version TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""
# Logs written before feedback ids existed gain the column; a repeated id's rows are ignored.
FEEDBACK_ID = """
CREATE UNIQUE INDEX IF NOT EXISTS feedback_once ON feedback (feedback_id, row) WHERE feedback_id IS NOT NULL;
"""


class FeedbackLog:
    """Append-only; one connection per process, opened after fork."""

    def __init__(self, directory: Path, filename: str = "feedback.sqlite3"):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / filename
        self._lock = threading.Lock()
        self._db = connect_wal(self.path)
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(feedback)")}
        if "feedback_id" not in columns:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                self._db.execute("ALTER TABLE feedback ADD COLUMN feedback_id TEXT")
        self._db.executescript(FEEDBACK_ID)

    def record(
        self,
        request_id: str,
        truths: list[str],
        predicted: list[str | None],
        reward: float,
        model_version: str,
        feedback_id: str | None = None,
    ) -> int:
        """Append one feedback's rows; returns how many were new (0 when ``feedback_id`` was seen before)."""
        now = time.time()
        rows = [
            (request_id, i, truth, pred, reward, model_version, now, feedback_id)
            for i, (truth, pred) in enumerate(zip(truths, predicted, strict=True))
        ]
        with self._lock:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO feedback (request_id, row, truth, predicted, reward, model_version, "
                "received_at, feedback_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self._db.total_changes - before

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
