"""Run a batch's rows through workers, in this process (serial) or on Ray (one actor per worker).

The driver only ships chunks of rows and appends the records that come back to the journal; every
worker loads the bundle once. Each actor has ``IN_FLIGHT`` chunks queued so it never waits for the
driver between two chunks, and chunks are small so the last ones do not leave a worker idle for long.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from glassbox.batch.journal import Journal
from glassbox.batch.worker import BatchSpec, BatchWorker, Row
from glassbox.errors import UpstreamUnavailable

IN_FLIGHT = 2  # chunks queued per actor
LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds its node to 127.0.0.1


@dataclass
class RunStats:
    """What a run did: rows explained now, rows failed, time, and each worker's peak memory."""

    explained: int = 0
    failed: int = 0
    seconds: float = 0.0
    worker_peak_bytes: list[int] = field(default_factory=list)
    startup_seconds: float = 0.0  # Ray start/connect and the workers' loading, before the first chunk
    driver_cpu_seconds: float = 0.0  # the driver's CPU while rows were explained (shipping, journaling)
    worker_cpu_seconds: list[float] = field(default_factory=list)  # each worker's CPU spent explaining

    @property
    def rows_per_second(self) -> float:
        return self.explained / self.seconds if self.seconds > 0 else 0.0


def chunks(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="row", desc="explain-batch", disable=not enabled, file=sys.stderr,
        smoothing=0.1, dynamic_ncols=True,
    )  # fmt: skip


# The progress bar is made once the workers are ready, so its rate and ETA count explaining only.
BarFactory = Callable[[], Any]


def _record(journal: Journal, stats: RunStats, bar: Any, records: list[dict[str, Any]]) -> None:
    journal.append(records)
    stats.explained += len(records)
    stats.failed += sum(1 for r in records if r["errors"])
    bar.update(len(records))


def run_serial(
    spec: BatchSpec, todo: Sequence[Row], journal: Journal, chunk_size: int, make_bar: BarFactory
) -> RunStats:
    """Every row in this process, with the same worker class and per-row function as on Ray."""
    stats = RunStats()
    start = time.perf_counter()
    worker = BatchWorker(spec)
    stats.startup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with make_bar() as bar:
        for chunk in chunks(todo, chunk_size):
            _record(journal, stats, bar, worker.explain(chunk))
    stats.seconds = time.perf_counter() - start
    stats.worker_peak_bytes = [worker.peak_memory_bytes()]
    stats.worker_cpu_seconds = [worker.cpu_seconds]
    return stats


def init_ray(address: str | None, workers: int) -> Callable[[], None]:
    """Connect to ``address`` (a cluster, or ``auto``) or start a local Ray sized for ``workers``;
    returns the shutdown to call when done (a no-op for a cluster this run did not start)."""
    if not address:
        # A local Ray is one node: keep it on the loopback interface (Ray's single-node mode, which it
        # reads at import) instead of the machine's network address.
        os.environ.setdefault(LOCAL_ONLY, "0")
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) brought its own Ray
        return lambda: None
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=max(workers, 1), **quiet)
    return ray.shutdown


def run_on_ray(
    spec: BatchSpec,
    todo: Sequence[Row],
    journal: Journal,
    chunk_size: int,
    make_bar: BarFactory,
    workers: int | None,
    address: str | None = None,
) -> RunStats:
    """Rows on ``workers`` Ray actors (None: one per CPU of the Ray cluster); records are journaled in
    the order chunks finish."""
    import ray

    stats = RunStats()
    start = time.perf_counter()
    shutdown = init_ray(address, workers or default_workers())
    try:
        if workers is None:
            workers = max(int(ray.cluster_resources().get("CPU", 1)), 1)
        workers = min(workers, -(-len(todo) // chunk_size))  # no actor without a chunk to explain
        remote_worker = ray.remote(num_cpus=1, max_restarts=0)(BatchWorker)
        actors = [remote_worker.remote(spec) for _ in range(workers)]
        # Wait for every actor to load (a bad bundle fails here, naming the cause, before any row).
        try:
            ray.get([actor.peak_memory_bytes.remote() for actor in actors])
        except ray.exceptions.RayError as exc:
            raise UpstreamUnavailable(f"the batch workers could not start: {_first_line(exc)}") from None
        stats.startup_seconds = time.perf_counter() - start
        start, cpu_start = time.perf_counter(), time.process_time()
        pending: dict[Any, tuple[Any, list[Row]]] = {}
        queue = chunks(todo, chunk_size)

        def submit(actor: Any) -> bool:
            chunk = next(queue, None)
            if chunk is None:
                return False
            pending[actor.explain.remote(chunk)] = (actor, chunk)
            return True

        for actor in actors:
            for _ in range(IN_FLIGHT):
                submit(actor)
        alive = list(actors)
        with make_bar() as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                actor, chunk = pending.pop(ready[0])
                try:
                    records = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    # ``explain`` records every row's own failure, so this is the actor (OOM, a lost
                    # node): its rows are written as failed (--retry-failed redoes them), it gets no more.
                    records = [_lost(row, spec, exc) for row in chunk]
                    if actor in alive:
                        alive.remove(actor)
                _record(journal, stats, bar, records)
                if actor in alive:
                    submit(actor)
                elif not alive and not pending and (left := sum(len(c) for c in queue)):
                    raise UpstreamUnavailable(
                        f"every batch worker died; {left} row(s) were not explained: rerun to resume"
                    )
        stats.seconds = time.perf_counter() - start
        stats.driver_cpu_seconds = time.process_time() - cpu_start
        usage = ray.get([actor.usage.remote() for actor in alive])
        stats.worker_peak_bytes = [peak for peak, _ in usage]
        stats.worker_cpu_seconds = [cpu for _, cpu in usage]
        for actor in actors:
            ray.kill(actor)
    finally:
        shutdown()
    return stats


def _first_line(exc: BaseException) -> str:
    """Ray's errors carry the remote traceback; its last line names the cause."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _lost(row: Row, spec: BatchSpec, exc: BaseException) -> dict[str, Any]:
    row_id, line, _ = row
    message = _first_line(exc)
    return {
        "id": row_id, "line": line, "job": spec.job, "model_version": None,
        "artifact_sha256": spec.artifact_sha256, "seed": None, "instance": None, "prediction": None,
        "probabilities": None, "explanations": {}, "errors": {"worker": f"{type(exc).__name__}: {message}"},
    }  # fmt: skip


def default_workers() -> int:
    return max(len(os.sched_getaffinity(0)), 1)
