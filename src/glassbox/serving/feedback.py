"""Durable record of the feedback (truth and reward) the component receives, in SQLite."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

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


class FeedbackLog:
    """Append-only; one connection per process, opened after fork."""

    def __init__(self, directory: Path, filename: str = "feedback.sqlite3"):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / filename
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def record(
        self,
        request_id: str,
        truths: list[str],
        predicted: list[str | None],
        reward: float,
        model_version: str,
    ) -> None:
        now = time.time()
        rows = [
            (request_id, i, truth, pred, reward, model_version, now)
            for i, (truth, pred) in enumerate(zip(truths, predicted, strict=True))
        ]
        with self._lock:
            self._db.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
