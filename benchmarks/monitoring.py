"""Drift and outlier monitoring (`python -m benchmarks.run monitoring`): its cost to the model, its own
throughput, and how well it detects shifts.

1. Model latency: three ``LoanClassifier`` microservices side by side (one worker, one thread each):
   one sending 100 % of its rows to a running ``glassbox monitor serve``, one with monitoring off, and
   a second one with monitoring off as a control (its ratio to the first is the noise alone); the
   client takes them in turn in blocks of sequential requests of 1 and of 100 rows (as
   ``benchmarks/serving.py`` does). Goal: p50 with monitoring <= 1.05x without.
2. Monitor throughput: rows/s of ``Monitor.ingest`` (parse, score, windows of 500 with their tests) in
   one thread, i.e. one core; and through the HTTP service (the process pinned to one CPU with
   ``taskset`` when there are two).
3. Detection: windows drawn from the held-out test split (no shift: the false-alarm rate) and the same
   windows with one feature shifted (the detection power), at the default level (0.001 family-wise per
   window, Holm), plus the outlier rate of held-out rows and of synthetic out-of-range rows.

Settings: GLASSBOX_BENCH_REQUESTS (default 1600 per case), GLASSBOX_BENCH_ARTIFACTS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from benchmarks.common import ADULT_CONFIG, artifacts_dir, post_caller, write_results
from benchmarks.serving import WARMUP
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, seldon_microservice, venv_bin

COMPONENT = "glassbox.serving.component.LoanClassifier"
GOAL = 1.05
ALPHA = 0.001  # the monitor's default GLASSBOX_MONITOR_P_VALUE
WINDOW = 500
# Requests per server in turn, and a pause after each block: the monitoring server's sender posts every
# ~0.2 s after the answers (linger), so its work lands inside its own block, and the pause keeps what
# is left of it out of the next server's block (with short blocks and no pause it landed there, and
# monitoring measured 0.7x "without").
BLOCK = 200
PAUSE_SECONDS = 0.5
ID = '"request_id": "'


def _heldout() -> np.ndarray:
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset
    from glassbox.pipeline.split import split_rows

    config = load_config(ADULT_CONFIG)
    data = load_dataset(config)
    return data.X[split_rows(data, config.split).test]


def _body(bundle, X: np.ndarray, prefix: str, per_request: int) -> str:
    """What the model's forwarder posts for ``X`` sent as requests of ``per_request`` rows."""
    from glassbox.contract.labels import Certainty
    from glassbox.contract.monitoring import MonitorRowsBuilder
    from glassbox.contract.records import UncertainRows

    builder = MonitorRowsBuilder(bundle.manifest.name, bundle.manifest.version)
    P = bundle.predict_proba(X)
    texts = []
    for start in range(0, len(X), per_request):
        part = slice(start, start + per_request)
        item = UncertainRows.select(
            f"{prefix}-{start}", np.arange(len(X[part])), X[part], P[part], Certainty.of(P[part]), time.time()
        )
        texts += [text for _, text in builder.build(item)]
    return '{"records": [' + ", ".join(texts) + "]}"


def _start_monitor(artifacts: Path, work: Path, cpu: str | None) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [venv_bin("glassbox"), "monitor", "serve", "--host", LOOPBACK, "--port", str(port)]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", cpu, *argv]
    process = ManagedProcess(
        "monitor",
        argv,
        work / f"monitor-{port}.log",
        env={"GLASSBOX_MONITOR_ARTIFACTS": str(artifacts)},
        health_url=f"http://{LOOPBACK}:{port}/health/ready",
    )
    return process.start(timeout=60), f"http://{LOOPBACK}:{port}"


def _pin(process: ManagedProcess, cpu: int) -> None:
    """Keep a server's whole process tree (gunicorn workers, gRPC server) on one CPU."""
    import psutil

    root = psutil.Process(process.pid)
    for proc in [root, *root.children(recursive=True)]:
        proc.cpu_affinity([cpu])


def latency(artifacts: Path, work: Path, X: np.ndarray, repeat: int) -> list[dict]:
    # With two CPUs or more: the model servers and this client on CPU 0, the monitor on CPU 1, as the
    # monitor's own pod would be; the model's cost is then its sender thread, not the monitor's work.
    pinned = (os.cpu_count() or 1) > 1
    own_cpus = os.sched_getaffinity(0)
    started: list[ManagedProcess] = []
    try:
        if pinned:
            os.sched_setaffinity(0, {0})
        monitor, monitor_url = _start_monitor(artifacts, work, "1" if pinned else None)
        started.append(monitor)
        base = {"GLASSBOX_MODEL_ARTIFACTS": str(artifacts), "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}
        servers = {  # the control is the "off" server again: its ratio shows what noise alone does
            "monitoring off": {},
            "control (off again)": {},
            "monitoring 100 %": {
                "GLASSBOX_MODEL_MONITOR_URL": monitor_url,
                "GLASSBOX_MODEL_MONITOR_SAMPLE": "1",
            },
        }
        payloads = {n: json.dumps({"data": {"ndarray": X[:n].tolist()}}).encode() for n in (1, 100)}
        calls = {}
        for name, extra in servers.items():
            env = {
                **base,
                "GLASSBOX_MODEL_OUTBOX_DIR": str(work / name.replace(" ", "-") / "outbox"),
                **extra,
            }
            proc, ports = seldon_microservice(
                name.replace(" ", "-"), COMPONENT, work / f"{len(started)}.log", env=env
            )
            started.append(proc.start(timeout=120))
            if pinned:
                _pin(proc, 0)
            session = requests.Session()
            url = f"http://127.0.0.1:{ports['http']}/api/v1.0/predictions"
            for n, payload in payloads.items():
                calls[(name, n)] = post_caller(session, url, payload, name)
        samples, per_round = _paired_blocks(calls, repeat)
        sent = (WARMUP + repeat) * (1 + 100)
        deadline = time.monotonic() + 30
        received = 0
        while time.monotonic() < deadline:
            received = requests.get(f"{monitor_url}/api/v1/status", timeout=10).json()["totals"]["rows"]
            if received >= sent:
                break
            time.sleep(0.5)
    finally:
        os.sched_setaffinity(0, own_cpus)
        for proc in reversed(started):
            proc.stop()
    rows = []
    for n in (1, 100):
        off = float(np.median(samples[("monitoring off", n)])) * 1000
        for server in ("monitoring 100 %", "control (off again)"):
            other = float(np.median(samples[(server, n)])) * 1000
            paired = float(np.median(per_round[(server, n)]))
            rows.append(
                {
                    "part": "model p50",
                    "case": f"{n} row(s): off / {server} (ratio: median over rounds)",
                    "value": f"{off:.3f} / {other:.3f} ms (overall {other / off:.3f}x)",
                    "ratio": paired,
                    "goal": f"<= {GOAL}x" if server == "monitoring 100 %" else "noise: ~1x",
                    "met": paired <= GOAL if server == "monitoring 100 %" else "",
                    **({"off_ms": off, "n": n} if server == "monitoring 100 %" else {}),
                }
            )
    rows.append({"part": "model → monitor", "case": "rows delivered / sent", "value": f"{received} / {sent}"})
    return rows


def _paired_blocks(calls: dict, repeat: int) -> tuple[dict, dict[tuple[str, int], list[float]]]:
    """Blocks of ``BLOCK`` sequential requests per case, in turn, round after round; also each round's
    p50 ratio (monitoring on / off), so that load changing between rounds cancels out."""
    samples: dict = {key: [] for key in calls}
    ratios: dict[tuple[str, int], list[float]] = {}
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    for _ in range(0, repeat, BLOCK):
        medians = {}
        for key, call in calls.items():
            block = []
            for _ in range(BLOCK):
                start = time.perf_counter()
                call()
                block.append(time.perf_counter() - start)
            samples[key] += block
            medians[key] = float(np.median(block))
            time.sleep(PAUSE_SECONDS)
        for n in (1, 100):
            for server in ("monitoring 100 %", "control (off again)"):
                ratios.setdefault((server, n), []).append(
                    medians[(server, n)] / medians[("monitoring off", n)]
                )
    return samples, ratios


def in_process(artifacts: Path, work: Path, X: np.ndarray, repeat: int) -> list[dict]:
    """The model's ``Dataplane.predict`` with and without the monitor's forwarder, in one process,
    calls interleaved one by one: background load hits both alike, so this resolves what the HTTP
    comparison above cannot on a busy machine. The sender thread (formatting, posting to the real
    monitor) runs beside the calls as in the server, sharing the GIL."""
    from glassbox.pipeline.artifacts import load_bundle
    from glassbox.serving.dataplane import Dataplane
    from glassbox.serving.settings import ModelSettings

    bundle = load_bundle(artifacts)
    bundle.predict_proba(X[:1])
    process, url = _start_monitor(artifacts, work, None)
    try:
        planes = {
            "off": Dataplane(ModelSettings(artifacts=artifacts, outbox_dir=work / "dp-off"), bundle),
            "100 %": Dataplane(
                ModelSettings(artifacts=artifacts, outbox_dir=work / "dp-on", monitor_url=url), bundle
            ),
        }
        for plane in planes.values():
            plane.start()
        rows = []
        for n in (1, 100):
            payload = {"data": {"ndarray": X[:n].tolist()}}
            times: dict[str, list[float]] = {name: [] for name in planes}
            for i in range(WARMUP + repeat):
                order = list(planes.items()) if i % 2 else list(planes.items())[::-1]
                for name, plane in order:
                    start = time.perf_counter()
                    plane.predict(payload)
                    if i >= WARMUP:
                        times[name].append(time.perf_counter() - start)
            off, on = (float(np.median(times[k])) * 1e6 for k in ("off", "100 %"))
            rows.append({"part": "Dataplane.predict p50, in process", "case": f"{n} row(s): off / 100 %",
                         "value": f"{off:.0f} / {on:.0f} µs (+{on - off:.0f} µs)", "ratio": on / off,
                         "rows": n, "added_us": on - off})  # fmt: skip
        for plane in planes.values():
            plane.stop()
    finally:
        process.stop()
    return rows


def throughput(artifacts: Path, work: Path, X: np.ndarray) -> list[dict]:
    from glassbox.monitor.app import build_monitor
    from glassbox.monitor.settings import MonitorSettings
    from glassbox.pipeline.artifacts import load_bundle

    bundle = load_bundle(artifacts)
    bodies = [_body(bundle, X[s : s + 1000], f"t{s}", per_request=10) for s in range(0, len(X) - 999, 500)]
    monitor = build_monitor(MonitorSettings(artifacts=artifacts, window_rows=WINDOW))
    rows_in, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5:
        for i, body in enumerate(bodies):
            monitor.ingest(body.replace(ID, f"{ID}r{rows_in}-{i}-"))  # fresh request ids: no duplicates
            rows_in += 1000
    in_process = rows_in / (time.perf_counter() - start)
    process, url = _start_monitor(artifacts, work, "1" if (os.cpu_count() or 1) > 1 else None)
    try:
        session = requests.Session()
        sent, start = 0, time.perf_counter()
        while time.perf_counter() - start < 5:
            for i, body in enumerate(bodies):
                answer = session.post(
                    f"{url}/api/v1/rows", data=body.replace(ID, f"{ID}h{sent}-{i}-"), timeout=30
                )
                assert answer.status_code == 200, answer.text
                sent += 1000
        over_http = sent / (time.perf_counter() - start)
    finally:
        process.stop()
    return [
        {
            "part": "monitor throughput",
            "case": f"in process, one thread, windows of {WINDOW}",
            "value": f"{in_process:,.0f} rows/s",
        },
        {
            "part": "monitor throughput",
            "case": "HTTP, bodies of 1,000 rows (100 requests of 10)",
            "value": f"{over_http:,.0f} rows/s",
        },
    ]


def detection(artifacts: Path, X: np.ndarray) -> list[dict]:
    from glassbox.monitor.drift import correct, evaluate_window, ks_references
    from glassbox.pipeline.artifacts import load_bundle

    bundle = load_bundle(artifacts)
    detectors = bundle.detectors()
    references = ks_references(detectors)
    alpha = ALPHA
    names = list(detectors.feature_names)
    workclass = names.index("Workclass")
    roll = np.roll(np.arange(len(detectors.category_counts[0])), 1)

    def shift(kind: str, rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        if kind.startswith("Age +"):
            rows[:, 0] += float(kind.split("+")[1].split()[0])
        elif kind == "Workclass permuted":
            rows[:, workclass] = roll[rows[:, workclass].astype(int)]
        elif kind.startswith("Hours per week +"):
            rows[:, names.index("Hours per week")] += float(kind.split("+")[1])
        return rows

    rng = np.random.default_rng(0)
    out = []
    for n in (100, 500):
        draws = [rng.choice(len(X), n, replace=False) for _ in range(300)]
        for kind in (
            "none",
            "Age +15 years",
            "Age +5 years",
            "Age +2 years",
            "Workclass permuted",
            "Hours per week +3",
        ):
            flagged = hit = 0
            for idx in draws:
                rows = shift(kind, X[idx])
                result = evaluate_window(detectors, references, rows, bundle.predict(rows), 0, 1.0, "holm", 0)
                p = np.array([result.p_values[name] for name in names])
                flags = correct(p, alpha, "holm")
                flagged += bool(flags.any() or result.class_mix_p_value <= alpha)
                if kind != "none":
                    target = "Age" if kind.startswith("Age") else kind.split(" +")[0].replace(" permuted", "")
                    hit += bool(flags[names.index(target)])
            if kind == "none":
                out.append(
                    {
                        "part": "false alarms",
                        "case": f"held-out windows of {n}, no shift",
                        "value": f"{flagged / len(draws):.4f} of windows flagged",
                        "ratio": flagged / len(draws),
                    }
                )
            else:
                out.append(
                    {
                        "part": "detection power",
                        "case": f"{kind}, windows of {n}",
                        "value": f"{hit / len(draws):.3f} of windows flag it",
                        "ratio": hit / len(draws),
                    }
                )
    scores = detectors.score(X)
    strange = X[:200].copy()
    strange[:100, 0] = 120  # Age beyond every training applicant
    strange[100:, names.index("Capital Gain")] = 1e6
    out.append(
        {
            "part": "outliers",
            "case": "held-out rows above the threshold (99th pct of training)",
            "value": f"{(scores > 1).mean():.4f}",
            "ratio": float((scores > 1).mean()),
        }
    )
    caught = float((detectors.score(strange) > 1).mean())
    out.append(
        {
            "part": "outliers",
            "case": "synthetic out-of-range rows caught (Age 120, Capital Gain 1e6)",
            "value": f"{caught:.3f}",
            "ratio": caught,
        }
    )
    return out


def main() -> Path:
    repeat = int(os.environ.get("GLASSBOX_BENCH_REQUESTS", "1600"))
    artifacts = artifacts_dir()
    X = _heldout()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="glassbox-bench-monitoring-") as tmp:
        work = Path(tmp)
        rows = latency(artifacts, work, X, repeat)
        added = in_process(artifacts, work, X, repeat)
    # What the added in-process time makes of the served request (the HTTP p50 with monitoring off).
    served = {r.pop("n"): r.pop("off_ms") for r in rows if "off_ms" in r}
    for r in added:
        share = 1 + r.pop("added_us") / 1000 / served[r.pop("rows")]
        r.update({"goal": f"<= {GOAL}x of the served p50: {share:.3f}x", "met": share <= GOAL})
    rows += added
    with tempfile.TemporaryDirectory(prefix="glassbox-bench-monitoring-") as tmp:
        work = Path(tmp)
        rows += throughput(artifacts, work, X)
    rows += detection(artifacts, X)
    load_after = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    notes = (
        f"Model latency: sequential loopback REST requests, {repeat} per case after {WARMUP} warm-up, the "
        f"three servers (monitoring off; off again, a control that shows the noise; monitoring 100 %) "
        f"taken in turn in blocks of {BLOCK} with {PAUSE_SECONDS} s pauses, round after round "
        "(benchmarks/serving.py's method); the ratio is the median over rounds of the two block p50s' ratio, "
        "so that load changing between rounds cancels out. The monitor runs on CPU 1, the servers and "
        "the client on CPU 0 (as the monitor's own pod would be; other processes of the machine run on "
        "both). In process: Dataplane.predict with and without the monitor's forwarder "
        "(its sender thread posting to the real monitor), calls interleaved one by one, and the time it adds "
        "set against the served p50 (the HTTP comparison's noise is seen in its control). Detection: 300 "
        "windows drawn without replacement from the 2,560 "
        f"held-out rows per case, level {ALPHA} family-wise per window (Holm over 12 features; the class "
        f"mix at the same level). Load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"({uptime})."
    )
    return write_results("monitoring", rows, ["part", "case", "value", "ratio", "goal", "met"], notes)


if __name__ == "__main__":
    print(main().read_text())
