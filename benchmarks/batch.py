"""Batch explanations: serial in one process against Ray with 1 and 2 workers, on the same rows.

Rows: the first ``N_ROWS`` (240) of the test split's 2,560, in split order, explained with the
explainer's default anchor parameters. Why not all 2,560: at ~0.2 s a row on one core, the three
scenarios would take ~20 minutes of a 2-core machine shared with other work, too long for
``make bench``; 240 rows are ~50 s of explaining per scenario, enough that start-up and the last
chunks are a small share. ``GLASSBOX_BENCH_BATCH_ROWS`` changes the count.

The rows are split into ``ROUNDS`` equal parts; each round runs the three scenarios on its part, in a
rotated order, so that the load of the shared machine drifts over all of them alike:

- ``serial``: ``glassbox explain-batch --serial`` as a function, every row in this process;
- ``ray-1``, ``ray-2``: the same rows on 1 and 2 Ray actors of one local Ray (2 CPUs, started once;
  its start-up is reported apart), each actor loading the bundle once per run.

Measures: rows/s while explaining (worker start-up excluded, reported apart), speed-up of 2 workers
over 1; the per-row cost as CPU seconds spent explaining per row, in the worker (load-independent)
and as wall time x workers / rows (includes waiting for a core); each worker's peak RSS; the driver's
CPU per row while rows are explained (what bounds a cluster's driver); the 1-minute load average;
and whether the outputs are byte-identical (they must be).

Goals (issue 17): speed-up >= 1.8 with 2 workers over 1; per-row cost in a Ray worker within 10 % of
the serial one. Run: ``python -m benchmarks.run batch`` (results in benchmarks/results/batch.{json,md}).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import ADULT_CONFIG, artifacts_dir, write_results

N_ROWS = int(os.environ.get("GLASSBOX_BENCH_BATCH_ROWS", "240"))
ROUNDS = 3
CHUNK = 4
SCENARIOS = {"serial": 0, "ray-1": 1, "ray-2": 2}
GOAL_SPEEDUP = 1.8
GOAL_COST_RATIO = 1.10


def write_inputs(work: Path) -> list[Path]:
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset
    from glassbox.pipeline.split import split_rows

    config = load_config(ADULT_CONFIG)
    data = load_dataset(config)
    rows = data.X[split_rows(data, config.split).test[:N_ROWS]].tolist()
    size = -(-len(rows) // ROUNDS)
    paths = []
    for k in range(ROUNDS):
        lines = [json.dumps({"id": f"test-{i:04d}", "row": rows[i]}) for i in range(k * size, (k + 1) * size)]
        paths.append(work / f"rows-{k}.jsonl")
        paths[-1].write_text("\n".join(lines) + "\n")
    return paths


def run(source: Path, artifacts: Path, output: Path, workers: int) -> dict:
    from glassbox.batch.job import BatchRequest, run_batch

    load = os.getloadavg()[0]
    result = run_batch(
        BatchRequest(input=source, artifacts=artifacts, output=output, workers=workers,
                     chunk_size=CHUNK, progress=False)
    )  # fmt: skip
    stats = result.stats
    assert stats.explained == result.rows and stats.failed == 0, (source, workers)
    return {
        "rows": stats.explained,
        "seconds": stats.seconds,
        "startup_s": stats.startup_seconds,
        "worker_cpu_s": sum(stats.worker_cpu_seconds),
        "busiest_worker_cpu_s": max(stats.worker_cpu_seconds),
        "peak_bytes": max(stats.worker_peak_bytes),
        "driver_cpu_s": stats.driver_cpu_seconds,
        "load": load,
    }


def summarise(name: str, workers: int, runs: list[dict]) -> dict:
    rows = sum(r["rows"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    row = {
        "scenario": name,
        "workers": workers or "in process",
        "rows": rows,
        "rows_per_s": rows / seconds,
        "cpu_ms_per_row": sum(r["worker_cpu_s"] for r in runs) / rows * 1000,
        "wall_ms_per_row_x_workers": seconds * max(workers, 1) / rows * 1000,
        # How much of a core each worker got while explaining (1.0: a core of its own all along).
        "core_share_per_worker": sum(r["worker_cpu_s"] for r in runs) / (seconds * max(workers, 1)),
        "startup_s": sum(r["startup_s"] for r in runs) / len(runs),
        "peak_rss_per_worker_mb": max(r["peak_bytes"] for r in runs) / 2**20,
        "load_1m": sum(r["load"] for r in runs) / len(runs),
    }
    if workers:  # the driver only ships rows and writes records: its CPU per row bounds a cluster
        row["driver_cpu_ms_per_row"] = sum(r["driver_cpu_s"] for r in runs) / rows * 1000
    return row


def main() -> Path:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a loopback-only local Ray
    import ray

    artifacts = artifacts_dir()
    runs: dict[str, list[dict]] = defaultdict(list)
    identical = True
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        sources = write_inputs(work)
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - start
        try:
            names = list(SCENARIOS)
            for k, source in enumerate(sources):
                order = names[k % len(names) :] + names[: k % len(names)]  # rotate: drift hits all alike
                for name in order:
                    output = work / f"{name}-{k}.jsonl"
                    runs[name].append(run(source, artifacts, output, SCENARIOS[name]))
                outputs = {(work / f"{name}-{k}.jsonl").read_bytes() for name in names}
                identical = identical and len(outputs) == 1
        finally:
            ray.shutdown()
    rows = [summarise(name, workers, runs[name]) for name, workers in SCENARIOS.items()]
    serial, one, two = rows
    speedup = two["rows_per_s"] / one["rows_per_s"]
    # The speed-up had each worker a core of its own: one worker's CPU over the busiest of two's.
    cpu_bound = sum(r["worker_cpu_s"] for r in runs["ray-1"]) / sum(
        r["busiest_worker_cpu_s"] for r in runs["ray-2"]
    )
    summary = {
        "ray_init_s": ray_start,
        "speedup_2_over_1": speedup,
        "speedup_2_over_1_if_a_core_each": cpu_bound,
        "speedup_2_over_serial": two["rows_per_s"] / serial["rows_per_s"],
        "cpu_cost_ray1_over_serial": one["cpu_ms_per_row"] / serial["cpu_ms_per_row"],
        "cpu_cost_ray2_over_serial": two["cpu_ms_per_row"] / serial["cpu_ms_per_row"],
        "wall_cost_ray1_over_serial": one["wall_ms_per_row_x_workers"] / serial["wall_ms_per_row_x_workers"],
        "outputs_identical": identical,
        "load_1m_5m_15m_at_start": list(load_start),
        "load_1m_5m_15m_at_end": list(os.getloadavg()),
        "cores": len(os.sched_getaffinity(0)),
    }
    summary["goal_speedup_met"] = speedup >= GOAL_SPEEDUP
    summary["goal_cost_met"] = summary["cpu_cost_ray1_over_serial"] <= GOAL_COST_RATIO
    notes = (
        f"{N_ROWS} test rows (the first of the split's 2,560) in {ROUNDS} rounds, default anchor "
        f"parameters, chunks of {CHUNK} rows; one local Ray with 2 CPUs (start-up {ray_start:.1f} s). "
        f"Speed-up 2 workers over 1: **{speedup:.2f}x** (goal >= {GOAL_SPEEDUP}; {cpu_bound:.2f}x had each "
        "worker had a core of its own, from their CPU times). Per-row CPU in one "
        f"Ray worker / serial: **{summary['cpu_cost_ray1_over_serial']:.3f}** (goal <= {GOAL_COST_RATIO}); "
        f"wall-time based: {summary['wall_cost_ray1_over_serial']:.3f}. Outputs byte-identical: "
        f"**{identical}**. Load average (1, 5, 15 min) at start {load_start[0]:.2f}, {load_start[1]:.2f}, "
        f"{load_start[2]:.2f} on {summary['cores']} cores shared with other work."
    )
    columns = ["scenario", "workers", "rows", "rows_per_s", "cpu_ms_per_row", "wall_ms_per_row_x_workers",
               "core_share_per_worker", "startup_s", "peak_rss_per_worker_mb", "driver_cpu_ms_per_row",
               "load_1m"]  # fmt: skip
    path = write_results("batch", [*rows, {"scenario": "summary", **summary}], columns, notes)
    lines = [f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in summary.items()]
    path.write_text(path.read_text() + "\n" + "\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    print(main().read_text())
