"""Explanations as jobs: bounded, pollable, never queued forever.

Long explain calls time out behind gateways (Seldon #3368, MLServer #354). Every explanation runs
here as a job; a synchronous request waits for it a bounded time and otherwise answers with the job's
id, so the caller polls instead of timing out, and the work is not lost. At most ``max_pending`` jobs
run or wait; one more is refused with ``Overloaded`` (503) at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from glassbox.errors import GlassboxError, NotFound, Overloaded


@dataclass
class Job:
    id: str
    future: Future
    created: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def status(self) -> str:
        if not self.future.done():
            return "running" if self.future.running() else "queued"
        return "failed" if self.future.exception() is not None else "done"

    def describe(self) -> dict[str, Any]:
        """The job's handle as callers see it; a failed job carries the error and its HTTP status."""
        described: dict[str, Any] = {"id": self.id, "status": self.status, "created": self.created}
        if self.finished is not None:
            described["finished"] = self.finished
        if self.status == "failed":
            exc = self.future.exception()
            status = exc.status_code if isinstance(exc, GlassboxError) else 500
            described["error"] = {"code": status, "message": str(exc)}
        return described


class JobManager:
    """Runs submitted callables on one worker thread (explanations are serialised anyway)."""

    def __init__(self, max_pending: int, ttl_s: float, max_jobs: int, workers: int = 1):
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.max_jobs = max_jobs
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="explain")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Callable[[], Any]) -> Job:
        with self._lock:
            if self._pending >= self.max_pending:
                raise Overloaded(
                    f"explainer busy: {self._pending} explanations running or waiting "
                    f"(limit GLASSBOX_EXPLAINER_MAX_PENDING={self.max_pending}); retry later"
                )
            self._pending += 1
            self._forget_old()
            job = Job(id=uuid.uuid4().hex, future=Future())
            self._jobs[job.id] = job
        job.future = self._executor.submit(fn)
        job.future.add_done_callback(lambda _: self._finished(job))
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no explanation job {job_id!r}: unknown, expired after {self.ttl_s:.0f}s, "
                "or submitted to another worker/replica"
            )
        return job

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _finished(self, job: Job) -> None:
        with self._lock:
            job.finished = time.time()
            self._pending -= 1

    def _forget_old(self) -> None:
        """Drop finished jobs past their TTL, then the oldest finished ones beyond ``max_jobs``."""
        now = time.time()
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for job in finished:
            if now - job.finished > self.ttl_s or len(self._jobs) >= self.max_jobs:
                del self._jobs[job.id]
