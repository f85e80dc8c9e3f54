"""The job worker inside each explainer process: an rq ``SimpleWorker`` on a thread of its own.

The work needs what ``load()`` built in this process (the fitted explainer, the model client), so
rq's usual worker, a separate process forking a child per job, does not fit: each explainer process
runs one ``SimpleWorker`` (jobs run in the worker's own thread, one at a time, as explanations are
serialised anyway) on a daemon thread. Adapted to living inside gunicorn's worker:

- no signal handlers (only the main thread may install them, and gunicorn owns the process's), no
  process title changes, no pub/sub command listener;
- jobs time out with rq's thread-safe ``TimerDeathPenalty`` (SIGALRM is for the main thread only);
- while a job runs a heartbeat thread renews its lease (its score in rq's StartedJobRegistry) every
  third of ``lease_s``. When the process dies, the lease runs out and rq's registry clean-up (run by
  any other worker's maintenance, or by a poll of that job) re-queues the job while it has retries
  left and fails it with ``AbandonedJobError`` after that;
- a worker that loses Redis (or that a restarted Redis forgot) leaves and is replaced, with a short
  back-off, by one that registers afresh; ``stop`` ends it, even while Redis is unreachable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.timeouts import JobTimeoutException, TimerDeathPenalty
from rq.worker import SimpleWorker, WorkerStatus

from glassbox.explain.jobs import Runner, Work, error_of

log = logging.getLogger(__name__)
RUN_WORK = "glassbox.explain.redis_worker.run_work"  # the rq job function, by import path
_current = threading.local()  # the runner of the worker executing on this thread


def run_work(work: dict[str, Any]) -> dict[str, Any]:
    """The rq job: explain ``work`` with this process's runner.

    Failures are the job's answer (``{"error": {code, message}}``), not exceptions: rq retries only
    jobs whose process died, never a deterministic failure such as a model that answers 502.
    """
    runner: Runner = _current.runner
    try:
        return {"body": runner(Work.from_json(work))}
    except JobTimeoutException as exc:
        return {"error": {"code": 504, "message": f"explanation took too long: {exc}"}}
    except Exception as exc:
        return {"error": error_of(exc)}


class RedisLost(StopRequested):
    """The worker's Redis went away: the worker leaves quietly (rq's own stop) and ``WorkerThread``
    replaces it once Redis answers again."""


class ExplainWorker(SimpleWorker):
    death_penalty_class = TimerDeathPenalty
    max_connection_wait_time = 2.0  # back-off cap while Redis is unreachable (rq's default: 60 s)

    def __init__(self, queue: Queue, runner: Runner, lease_s: int, **kwargs: Any):
        # rq's idle loop blocks ``worker_ttl - 15`` s on the queue, then runs its maintenance (the
        # registry clean-up that re-queues abandoned jobs): once per lease.
        ttl = lease_s + 15
        super().__init__(
            [queue], worker_ttl=ttl, maintenance_interval=lease_s, serializer=queue.serializer, **kwargs
        )
        self.runner = runner
        self.lease_s = lease_s
        self._holding_job = False

    def _install_signal_handlers(self) -> None:
        pass

    def procline(self, message: str) -> None:
        pass

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.lease_s

    def reorder_queues(self, reference_queue: Queue) -> None:
        # rq calls this right after it dequeued a job: from here until the job ran, never stop.
        self._holding_job = True
        super().reorder_queues(reference_queue)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # rq's idle loop retries an unreachable Redis forever, beating before each try, and checks its
        # stop flag only between jobs: stop here too, unless a job was just dequeued.
        if self._stop_requested and pipeline is None and not self._holding_job:
            raise StopRequested()
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        # Leave rather than retry when Redis went away or forgot this worker (a restart without
        # persistence): the replacement registers afresh, so the worker count the 503 limit uses holds.
        try:
            super().heartbeat(timeout)
            registered = self.connection.hexists(self.key, "birth")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisLost(f"lost Redis: {exc}") from exc
        if not registered:
            raise RedisLost("Redis forgot this worker (restarted?)")

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(
            target=self._renew_lease, args=(job, execution, done), name="explain-lease", daemon=True
        )
        beat.start()
        _current.runner = self.runner
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beat.join()
            self._holding_job = False
        self.set_state(WorkerStatus.IDLE)

    def _renew_lease(self, job: Job, execution: Any, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            try:
                self.maintain_heartbeats(job, execution)
            except redis.RedisError as exc:  # Redis is down: the lease may lapse; the job may be re-run
                log.warning("could not renew the lease of job %s: %s", job.id, exc)


class WorkerThread(threading.Thread):
    """Keeps one ``ExplainWorker`` working until ``stop``; a worker that quits is replaced."""

    def __init__(self, make_queue: Callable[[], Queue], runner: Runner, lease_s: int):
        super().__init__(name="explain-jobs", daemon=True)
        self._make_queue, self._runner, self._lease_s = make_queue, runner, lease_s
        self._stopping = threading.Event()
        self.worker: ExplainWorker | None = None

    def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                queue = self._make_queue()  # a new connection each time: rq widens its socket timeout
                self.worker = ExplainWorker(queue, self._runner, self._lease_s, connection=queue.connection)
                self.worker.work(logging_level="WARNING")
                backoff = 0.5
            except Exception as exc:  # Redis unreachable at start, or rq gave up: try again shortly
                if self._stopping.is_set():
                    break
                log.warning("explanation job worker stopped (%s); restarting in %.1fs", exc, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        self._stopping.set()
        if self.worker is not None:
            self.worker._stop_requested = True  # rq's own flag: leave after the current job or dequeue
