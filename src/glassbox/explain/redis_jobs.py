"""Explanation jobs in Redis with rq: submitted on any explainer process, run by any, polled on any.

rq keeps the job records, the queue, the results and the registry of running jobs with their
leases; each explainer process runs one worker thread (``redis_worker``). The queue is per model
version (``<prefix>:<artifact sha256[:16]>``), so during a rollout a job is only run by processes
serving the model it was submitted for. Jobs, results and failures expire after ``ttl_s``.

A job whose process died is noticed when its lease runs out: the poll that sees it (or another
worker's periodic maintenance) has rq re-queue it, ``retries`` times at most, and then fail it with a
reason. A poll never reports 'running' for longer than the lease after the process is gone.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from rq import worker_registration
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.results import Result
from rq.serializers import JSONSerializer

from glassbox.errors import NotFound, Overloaded
from glassbox.explain.jobs import DONE, FAILED, QUEUED, RUNNING, JobState, Runner, Work
from glassbox.explain.redis_store import RedisStore
from glassbox.explain.redis_worker import RUN_WORK, WorkerThread

_STATUS = {
    JobStatus.QUEUED: QUEUED,
    JobStatus.DEFERRED: QUEUED,
    JobStatus.SCHEDULED: QUEUED,
    JobStatus.STARTED: RUNNING,
}


class ExplainQueue(Queue):
    """rq's queue with a maintenance lock that lapses after one lease (rq's lasts 15 minutes): the
    clean-up that re-queues abandoned jobs must not wait for a lock whose holder died."""

    lock_s = 30

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=self.lock_s))


class RedisJobs:
    def __init__(
        self,
        store: RedisStore,
        model_version: str,
        max_pending: int,
        ttl_s: float,
        lease_s: int,
        retries: int,
        timeout_s: int,
        execute: bool = True,
    ):
        self.store = store
        self.max_pending = max_pending
        self.ttl_s = max(1, int(ttl_s))
        self.lease_s = lease_s
        self.retries = retries
        self.timeout_s = timeout_s
        self.execute = execute
        self.queue_name = store.key(model_version[:16])
        self.queue = self._queue(store.client)
        self._worker: WorkerThread | None = None

    def bind(self, runner: Runner) -> None:
        """Start this process's worker thread, which runs jobs with ``runner``."""
        if not self.execute or self._worker is not None:
            return
        self._worker = WorkerThread(lambda: self._queue(self.store.worker_client()), runner, self.lease_s)
        self._worker.start()

    def submit(self, work: Work) -> JobState:
        with self.store.guard("submitting an explanation job"):
            self._refuse_when_full()
            job = self.queue.enqueue_call(
                RUN_WORK,
                kwargs={"work": work.to_json()},
                job_id=uuid.uuid4().hex,
                timeout=self.timeout_s,
                result_ttl=self.ttl_s,
                failure_ttl=self.ttl_s,
                ttl=self.ttl_s,  # a job nobody started within its TTL is dropped (polls answer 404)
                retry=Retry(max=self.retries) if self.retries else None,
                meta={"retries": self.retries},
            )
            return self._state(job)

    def wait(self, job_id: str, timeout: float) -> JobState:
        """The job's state once it is done or failed, or after ``timeout`` seconds.

        Blocks on the job's rq result stream (XREAD), in slices shorter than the socket timeout.
        """
        deadline = time.monotonic() + timeout
        slice_s = max(0.05, min(self.store.socket_timeout_s / 2, self.lease_s))
        while True:
            state = self.get(job_id)
            left = deadline - time.monotonic()
            if state.finished_or_failed or left <= 0:
                return state
            block_ms = max(1, int(min(left, slice_s) * 1000))
            with self.store.guard("waiting for an explanation job"):
                self.store.client.xread({Result.get_key(job_id): "0-0"}, block=block_ms)

    def get(self, job_id: str) -> JobState:
        with self.store.guard("reading an explanation job"):
            job = self._fetch(job_id)
            if job.get_status(refresh=False) == JobStatus.STARTED and self._reap(job):
                job = self._fetch(job_id)
            return self._state(job)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    # -- internals -------------------------------------------------------------------------------

    def _queue(self, connection: Any) -> ExplainQueue:
        queue = ExplainQueue(self.queue_name, connection=connection, serializer=JSONSerializer)
        queue.lock_s = self.lease_s
        return queue

    def _fetch(self, job_id: str) -> Job:
        try:
            job = Job.fetch(job_id, connection=self.store.client, serializer=JSONSerializer)
        except NoSuchJobError:
            job = None
        if job is None or not (job.origin or "").startswith(self.store.prefix + ":"):
            raise NotFound(f"no explanation job {job_id!r}: unknown, or expired after {self.ttl_s}s")
        return job

    def _refuse_when_full(self) -> None:
        """At most ``max_pending`` jobs queued or running per live worker (each process runs one)."""
        client = self.store.client
        with client.pipeline(transaction=False) as pipe:
            pipe.llen(self.queue.key)
            pipe.zcard(self.queue.started_job_registry.key)
            pipe.scard(worker_registration.WORKERS_BY_QUEUE_KEY % self.queue_name)
            queued, running, workers = pipe.execute()
        limit = self.max_pending * max(1, workers)
        if queued + running >= limit:
            raise Overloaded(
                f"explainer busy: {queued + running} explanations running or waiting for {max(1, workers)} "
                f"worker(s) (limit GLASSBOX_EXPLAINER_MAX_PENDING={self.max_pending} each); retry later"
            )

    def _reap(self, job: Job) -> bool:
        """If ``job``'s lease ran out, let rq re-queue or fail it now. True when something was done."""
        registry = self.queue.started_job_registry
        if job.id not in registry.get_expired_job_ids() or not self.queue.acquire_maintenance_lock():
            return False
        try:
            registry.cleanup()
        finally:
            self.queue.release_maintenance_lock()
        return True

    def _state(self, job: Job) -> JobState:
        status = job.get_status(refresh=False)
        created = _timestamp(job.created_at) or time.time()
        finished = _timestamp(job.ended_at)
        extra = self._attempt(job)
        if status == JobStatus.FINISHED:
            answer = job.return_value() or {}
            if "error" in answer:
                return JobState(job.id, FAILED, created, finished, error=answer["error"], extra=extra)
            return JobState(job.id, DONE, created, finished, result=answer.get("body"), extra=extra)
        if status in _STATUS:
            return JobState(job.id, _STATUS[status], created, extra=extra)
        return JobState(job.id, FAILED, created, finished, error=self._failure(job), extra=extra)

    def _failure(self, job: Job) -> dict[str, Any]:
        result = job.latest_result()
        reason = (result.exc_string or "") if result is not None else ""
        if "AbandonedJobError" in reason:
            runs = 1 + int(job.meta.get("retries", 0))
            return {
                "code": 503,
                "message": (
                    f"explanation job lost: the explainer process running it stopped (no heartbeat for "
                    f"{self.lease_s}s), {runs} time(s) in all; submit it again"
                ),
            }
        last = reason.strip().splitlines()[-1] if reason.strip() else str(job.get_status(refresh=False))
        return {"code": 500, "message": f"explanation job failed: {last}"}

    def _attempt(self, job: Job) -> dict[str, Any]:
        """``{"attempt": n, "note": ...}`` for a job re-run after its process died (n > 1)."""
        retries = int(job.meta.get("retries", 0))
        left = job.retries_left if job.retries_left is not None else retries
        attempt = 1 + retries - left
        if attempt <= 1:
            return {}
        return {
            "attempt": attempt,
            "note": (
                f"re-run: the explainer process running it before stopped (no heartbeat for {self.lease_s}s)"
            ),
        }


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None
