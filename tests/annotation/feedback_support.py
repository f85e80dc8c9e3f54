"""Helpers of the feedback, replica and restart tests: model-valid records and counts at the real model."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from conftest import QUEUE_FEATURES, ModelService, make_queue_record


def adult_records(rows: Sequence[Sequence[float]], prefix: str, **overrides: Any) -> list[dict]:
    """Intake records over real Adult rows (so the model accepts their feedback), one request id each."""
    return [
        make_queue_record(
            i,
            id=f"{prefix}-{i}:0",
            request_id=f"{prefix}-{i}",
            features=dict(zip(QUEUE_FEATURES, [float(v) for v in row], strict=True)),
            **overrides,
        )
        for i, row in enumerate(rows)
    ]


def feedback_log(model: ModelService) -> dict[str, int]:
    """Rows of the model's own feedback log (``feedback.sqlite3``) per request id."""
    path = model.outbox_dir / "feedback.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(path, timeout=30) as db:
        rows = db.execute("SELECT request_id, COUNT(*) FROM feedback GROUP BY request_id").fetchall()
    return dict(rows)


def model_feedback_total(model: ModelService) -> float:
    """``glassbox_model_feedback_total`` at the model, every reward summed."""
    samples = model.metric_samples()
    return sum(v for k, v in samples.items() if k.startswith("glassbox_model_feedback_total"))


def wait_for[T](condition: Callable[[], T], timeout: float = 60.0, every: float = 0.2) -> T:
    """``condition()``'s first truthy value, polled every ``every`` s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: last {value!r}")
        time.sleep(every)
        value = condition()
    return value
