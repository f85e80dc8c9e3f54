"""Model component latency against the real microservice (`python -m benchmarks.run serving`).

Every server runs as ``seldon-core-microservice`` with one worker and one thread; a client sends
sequential loopback REST requests of 1 and of 100 rows and we report percentiles. Servers:

- floor: ``ConstantModel`` (benchmarks/serving_models), no work at all: what the wrapper costs;
- sklearn: the fitted sklearn pipeline's ``predict_proba`` served as the classic talk does;
- loanclassifier: ``LoanClassifier`` (validation, compact-forest fast path, metrics), no forwarding;
- loanclassifier+forwarding: the same with every row forwarded (threshold 1.01) to a running queue.

The servers run side by side and the client takes them in turn in blocks of ``BLOCK`` sequential
requests (one in flight at a time, bodies encoded once: the client's JSON encoding is not the
server's cost), round after round. Blocks rather than one request per server per round: a server
serving continuously keeps its working set (the forest's ~480k nodes) in the CPU caches, as it would
in production, whereas single interleaved requests measured mostly the caches refilling after a
neighbour ran. Rounds still spread the machine's background load over every server, and forwarding's
after-the-answer work (the sender thread, the queue's inserts) lands mostly in its own block.

Settings: GLASSBOX_BENCH_REQUESTS (default 800 per case), GLASSBOX_BENCH_ARTIFACTS (default
artifacts/loanclassifier, trained first if missing).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from benchmarks.common import percentiles, post_caller, write_results
from glassbox.stack.process import ManagedProcess, free_port, seldon_microservice, venv_bin

REPO = Path(__file__).resolve().parents[1]
TOY_MODELS = Path(__file__).resolve().parent / "serving_models"
CONFIG = REPO / "pipeline/configs/adult.yaml"
COMPONENT = "glassbox.serving.component.LoanClassifier"
GOALS = {1: 1.25, 100: 1.5}  # p50 at most this multiple of the floor's
FORWARDING_GOAL = 1.05  # p50 with every row forwarded, relative to no forwarding
BASELINE = "issue author, seldon-core 1.19.0: floor 2.1 / 2.9 ms, sklearn 15.4 / 19.1 ms (1 / 100 rows)"
QUEUE_KEY = "bench-owner-key"
WARMUP = 50
BLOCK = 100


def _artifacts() -> Path:
    path = Path(os.environ.get("GLASSBOX_BENCH_ARTIFACTS", REPO / "artifacts/loanclassifier"))
    if not (path / "LATEST").exists() and not (path / "manifest.json").exists():
        from glassbox.pipeline.config import load_config
        from glassbox.pipeline.train import train

        train(load_config(CONFIG), path)
    return path


def _payloads() -> dict[int, bytes]:
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset

    X = load_dataset(load_config(CONFIG)).X
    return {n: json.dumps({"data": {"ndarray": X[:n].tolist()}}).encode() for n in (1, 100)}


def _start_queue(work: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {
        "GLASSBOX_QUEUE_DATABASE_URL": f"sqlite:///{work / 'queue.db'}",
        "GLASSBOX_QUEUE_PORT": str(port),
        "GLASSBOX_QUEUE_OWNER_API_KEY": QUEUE_KEY,
    }
    queue = ManagedProcess(
        "queue", [venv_bin("glassbox"), "queue", "serve"], work / "queue.log", env=env,
        health_url=f"http://127.0.0.1:{port}/health",
    ).start(timeout=60)  # fmt: skip
    return queue, f"http://127.0.0.1:{port}"


def _queue_total(queue_url: str) -> int:
    answer = requests.get(
        f"{queue_url}/api/v1/records", params={"limit": 1}, headers={"X-API-Key": QUEUE_KEY}, timeout=30
    )
    return int(answer.json()["total"]) if answer.status_code == 200 else -1


def main() -> Path:
    repeat = int(os.environ.get("GLASSBOX_BENCH_REQUESTS", "800"))
    artifacts = _artifacts()
    payloads = _payloads()
    started: list[ManagedProcess] = []
    with tempfile.TemporaryDirectory(prefix="glassbox-bench-serving-") as tmp:
        work = Path(tmp)
        try:
            queue, queue_url = _start_queue(work)
            started.append(queue)
            base = {"GLASSBOX_MODEL_ARTIFACTS": str(artifacts), "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}
            forwarding = {
                "GLASSBOX_MODEL_QUEUE_URL": queue_url,
                "GLASSBOX_MODEL_QUEUE_API_KEY": QUEUE_KEY,
                "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": "1.01",
            }
            servers = {  # name: (interface, extra env, cwd)
                "floor": ("ConstantModel", {}, str(TOY_MODELS)),
                "sklearn": ("SklearnModel", {}, str(TOY_MODELS)),
                "loanclassifier": (COMPONENT, {}, None),
                "loanclassifier+forwarding": (COMPONENT, forwarding, None),
            }
            calls = {}
            for name, (interface, extra, cwd) in servers.items():
                env = {**base, "GLASSBOX_MODEL_OUTBOX_DIR": str(work / name / "outbox"), **extra}
                proc, ports = seldon_microservice(name, interface, work / f"{name}.log", env=env, cwd=cwd)
                started.append(proc.start(timeout=120))
                session = requests.Session()
                url = f"http://127.0.0.1:{ports['http']}/api/v1.0/predictions"
                for n, payload in payloads.items():
                    calls[(name, n)] = post_caller(session, url, payload, name)
            samples = _alternating_blocks(calls, repeat)
            time.sleep(2)  # let the sender deliver what it still holds
            delivered = _queue_total(queue_url)
        finally:
            for proc in reversed(started):
                proc.stop()
    rows = [{"server": name, "rows": n, **percentiles(s)} for (name, n), s in samples.items()]
    _add_ratios(rows)
    sent = (WARMUP + repeat) * sum(payloads)  # forwarding server only
    notes = (
        f"Sequential loopback REST requests (bodies encoded once), one gunicorn worker with one thread "
        f"per server, {repeat} requests per case after {WARMUP} warm-up, servers taken in turn in blocks "
        f"of {BLOCK}. Goals: loanclassifier p50 <= {GOALS[1]}x floor (1 row), <= {GOALS[100]}x (100 rows); "
        f"forwarding every row p50 <= {FORWARDING_GOAL}x without. Baseline ({BASELINE}). "
        f"Forwarding run: {sent} rows sent, {delivered} records in the queue 2 s after the last request."
    )
    columns = ["server", "rows", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "x_floor", "goal", "met"]
    return write_results("serving", rows, columns, notes)


def _alternating_blocks(
    calls: dict[tuple[str, int], Callable[[], None]], repeat: int
) -> dict[tuple[str, int], list]:
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    for _ in range(0, repeat, BLOCK):
        for key, call in calls.items():
            for _ in range(BLOCK):
                start = time.perf_counter()
                call()
                samples[key].append(time.perf_counter() - start)
    return samples


def _add_ratios(rows: list[dict]) -> None:
    by = {(r["server"], r["rows"]): r for r in rows}
    for r in rows:
        n = r["rows"]
        r["x_floor"] = r["p50_ms"] / by[("floor", n)]["p50_ms"]
        if r["server"] == "loanclassifier":
            r["goal"] = f"<= {GOALS[n]}x floor"
            r["met"] = r["x_floor"] <= GOALS[n]
        elif r["server"] == "loanclassifier+forwarding":
            ratio = r["p50_ms"] / by[("loanclassifier", n)]["p50_ms"]
            r["goal"] = f"<= {FORWARDING_GOAL}x no forwarding ({ratio:.3f}x)"
            r["met"] = ratio <= FORWARDING_GOAL


if __name__ == "__main__":
    print(main().read_text())
