"""Shared helpers for the benchmarks: timing statistics and writing results as JSON plus Markdown."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean of durations given in seconds, reported in milliseconds."""
    ordered = sorted(samples_s)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def time_calls(
    fn: Callable[[], object], repeat: int, warmup: int = 10, before: Callable[[], object] | None = None
) -> dict[str, float]:
    """Percentiles of ``fn``'s wall time; ``before`` runs ahead of each timed call, untimed."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, rows: Sequence[dict], columns: Sequence[str], notes: str = "") -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md``; returns the Markdown path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2) + "\n")
    intro = f"{notes.strip()}\n\n" if notes else ""
    md = f"# {name}\n\n{intro}{markdown_table(rows, columns)}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(md)
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


REPO = Path(__file__).resolve().parents[1]
ADULT_CONFIG = REPO / "pipeline/configs/adult.yaml"


def artifacts_dir() -> Path:
    """The model dir the benchmarks serve (``GLASSBOX_BENCH_ARTIFACTS``), trained first if it is empty."""
    import os

    from glassbox.stack.demo import ensure_trained
    from glassbox.stack.settings import StackSettings

    path = Path(os.environ.get("GLASSBOX_BENCH_ARTIFACTS", REPO / "artifacts/loanclassifier"))
    ensure_trained(StackSettings(artifacts=path, train_config=ADULT_CONFIG))
    return path


def start_queue(workdir: Path, name: str, env: dict[str, str]):
    """A real ``glassbox queue serve`` on a free loopback port: (started ManagedProcess, base URL)."""
    from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, venv_bin

    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    proc = ManagedProcess(
        name, [venv_bin("glassbox"), "queue", "serve", "--host", LOOPBACK, "--port", str(port)],
        workdir / f"{name}.log", env=env, health_url=f"{url}/health",
    )  # fmt: skip
    return proc.start(timeout=60), url


def measures(results: Sequence[dict]) -> list[dict]:
    """Scenario results (dicts with a ``scenario`` and their own measures) as one row per measure."""
    rows = [(r["scenario"], k, v) for r in results for k, v in r.items() if k != "scenario"]
    return [{"scenario": scenario, "measure": k, "value": v} for scenario, k, v in rows]


def post_caller(session: Any, url: str, body: bytes, name: str) -> Callable[[], None]:
    """One timed call: POST the JSON ``body`` on ``session`` (a ``requests.Session``); anything but a
    200 stops the benchmark, naming the server."""
    headers = {"Content-Type": "application/json"}

    def call() -> None:
        answer = session.post(url, data=body, headers=headers, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:200]}")

    return call
