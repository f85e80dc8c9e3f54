"""Explanations as jobs: bounded, pollable, never queued forever.

Long explain calls time out behind gateways (Seldon #3368, MLServer #354). Every explanation runs
as a job; a synchronous request waits for it a bounded time and otherwise answers with the job's id,
so the caller polls instead of timing out, and the work is not lost. At most ``max_pending`` jobs
run or wait; one more is refused with ``Overloaded`` (503) at once.

A job is described by ``Work`` (JSON, so it can cross processes) and run by the service's runner.
Two stores keep jobs: ``JobManager`` here, in one process (the embedded default), and
``redis_jobs.RedisJobs``, shared by every worker and replica. Both answer ``JobState``.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from glassbox.errors import GlassboxError, NotFound, Overloaded

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class Work:
    """What one job explains: encoded rows, the anchor parameters, the seed, and the methods (None:
    anchors alone, the shape jobs had before other methods existed)."""

    rows: list[list[float]]
    params: dict[str, Any]
    seed: int
    methods: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"rows": self.rows, "params": self.params, "seed": self.seed}
        return data if self.methods is None else {**data, "methods": self.methods}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Work:
        return cls(rows=data["rows"], params=data["params"], seed=data["seed"], methods=data.get("methods"))


Runner = Callable[[Work], dict[str, Any]]


@dataclass(frozen=True)
class JobState:
    """A job as a poll sees it; ``result`` is the response body of a done job."""

    id: str
    status: str
    created: float
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # {"code": HTTP status, "message": ...} of a failed job
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the attempt of a job re-run
    # The original exception, when the job ran in this process: a synchronous caller gets it back.
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def finished_or_failed(self) -> bool:
        return self.status in (DONE, FAILED)

    def describe(self) -> dict[str, Any]:
        """The job's handle as callers see it; a failed job carries the error and its HTTP status."""
        described: dict[str, Any] = {"id": self.id, "status": self.status, "created": self.created}
        if self.finished is not None:
            described["finished"] = self.finished
        if self.error is not None:
            described["error"] = self.error
        return {**described, **self.extra}

    def raise_failure(self) -> None:
        """Raise what made the job fail, with its HTTP status (for a synchronous request)."""
        if self.exception is not None:
            raise self.exception
        assert self.error is not None
        raise JobFailed(self.error["message"], status_code=self.error["code"])


class JobFailed(GlassboxError):
    """A job that failed in another process: its HTTP status and message, as it recorded them."""


def error_of(exc: BaseException) -> dict[str, Any]:
    """``{"code", "message"}`` of an exception: a GlassboxError keeps its status, anything else is 500."""
    return {"code": exc.status_code if isinstance(exc, GlassboxError) else 500, "message": str(exc)}


class Jobs(Protocol):
    """What the service needs of a job store (``JobManager`` or ``RedisJobs``)."""

    def bind(self, runner: Runner) -> None: ...

    def submit(self, work: Work) -> JobState: ...

    def wait(self, job_id: str, timeout: float) -> JobState: ...

    def get(self, job_id: str) -> JobState: ...

    def close(self) -> None: ...


@dataclass
class _Job:
    id: str
    future: Future
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def state(self) -> JobState:
        future = self.future
        if not future.done():
            status = RUNNING if future.running() else QUEUED
            return JobState(self.id, status, self.created)
        exc = future.exception()
        if exc is not None:
            return JobState(self.id, FAILED, self.created, self.finished, error=error_of(exc), exception=exc)
        return JobState(self.id, DONE, self.created, self.finished, result=future.result())


class JobManager:
    """In-process jobs on one worker thread (explanations are serialised anyway)."""

    def __init__(self, max_pending: int, ttl_s: float, max_jobs: int, workers: int = 1):
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.max_jobs = max_jobs
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="explain")
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pending = 0
        self._runner: Runner | None = None

    @property
    def pending(self) -> int:
        return self._pending

    def bind(self, runner: Runner) -> None:
        self._runner = runner

    def submit(self, work: Work) -> JobState:
        runner = self._runner
        assert runner is not None, "bind a runner first"
        with self._lock:
            if self._pending >= self.max_pending:
                raise Overloaded(
                    f"explainer busy: {self._pending} explanations running or waiting "
                    f"(limit GLASSBOX_EXPLAINER_MAX_PENDING={self.max_pending}); retry later"
                )
            self._pending += 1
            self._forget_old()
            job = _Job(id=uuid.uuid4().hex, future=Future())
            self._jobs[job.id] = job
        job.future = self._executor.submit(runner, work)
        job.future.add_done_callback(lambda _: self._finished(job))
        return job.state()

    def wait(self, job_id: str, timeout: float) -> JobState:
        job = self._job(job_id)
        concurrent.futures.wait([job.future], timeout=timeout)
        if job.future.done():
            # the done-callback stamps ``finished``; it may run a moment after the future completes
            with self._lock:
                job.finished = job.finished or time.time()
        return job.state()

    def get(self, job_id: str) -> JobState:
        return self._job(job_id).state()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _job(self, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no explanation job {job_id!r}: unknown, expired after {self.ttl_s:.0f}s, "
                "or submitted to another worker/replica (set GLASSBOX_EXPLAINER_REDIS_URL to share jobs)"
            )
        return job

    def _finished(self, job: _Job) -> None:
        with self._lock:
            job.finished = job.finished or time.time()
            self._pending -= 1

    def _forget_old(self) -> None:
        """Drop finished jobs past their TTL, then the oldest finished ones beyond ``max_jobs``."""
        now = time.time()
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for job in finished:
            if now - job.finished > self.ttl_s or len(self._jobs) >= self.max_jobs:
                del self._jobs[job.id]
