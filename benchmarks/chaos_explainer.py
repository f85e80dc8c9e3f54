"""Chaos: one of two explainer processes killed (SIGKILL) with explanation jobs in flight.

A private redis-server, a LoanClassifier microservice and two LoanExplainer microservices (A and B)
sharing that Redis (job lease ``GLASSBOX_CHAOS_LEASE_S``; ``GLASSBOX_CHAOS_RETRIES`` re-runs, default
1: with 0 the killed process's job fails, with a reason). ``JOBS`` jobs of two rows each, with
distinct seeds (no cache hits), are submitted with ``job=submit``, alternately to A and B. As soon as
A runs one of them, A is killed with SIGKILL. Every job is then polled on B until it is done or
failed, within a deadline. Counts: submitted, completed, failed with a reason, lost (neither by the
deadline, or unknown to B: must be 0), re-run after the kill (attempt 2), and the time from the kill
to the last job's end.

``python -m benchmarks.chaos_explainer``, or ``explainer_killed(...)`` from ``benchmarks/chaos.py``.
Bounded: a fixed number of jobs and deadlines on every wait. Results in
benchmarks/results/chaos_explainer.{json,md}.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from benchmarks.common import write_results
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, seldon_microservice

JOBS = int(os.environ.get("GLASSBOX_CHAOS_EXPLAIN_JOBS", "12"))
LEASE_S = int(os.environ.get("GLASSBOX_CHAOS_LEASE_S", "5"))
RETRIES = int(
    os.environ.get("GLASSBOX_CHAOS_RETRIES", "1")
)  # 0: the killed process's job fails, with a reason
DEADLINE_S = 300.0
COMMON_ENV = {
    "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
    "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
}


def start_redis(workdir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    redis_server = ManagedProcess("redis", argv, workdir / "redis.log", cwd=str(workdir), ready_ports=(port,))
    return redis_server.start(timeout=20), f"redis://{LOOPBACK}:{port}/0"


def start_model(artifacts: Path, workdir: Path) -> tuple[ManagedProcess, str]:
    env = {
        **COMMON_ENV,
        "GLASSBOX_MODEL_ARTIFACTS": str(artifacts),
        "GLASSBOX_MODEL_OUTBOX_DIR": str(workdir),
    }
    model, ports = seldon_microservice(
        "model", "glassbox.serving.component.LoanClassifier", workdir / "model.log", env=env, threads=4
    )
    return model.start(timeout=180), f"http://{LOOPBACK}:{ports['http']}/api/v1.0/predictions"


def start_explainer(name: str, artifacts: Path, workdir: Path, model_url: str, redis_url: str):
    env = {
        **COMMON_ENV,
        "GLASSBOX_EXPLAINER_ARTIFACTS": str(artifacts),
        "GLASSBOX_EXPLAINER_MODEL_URL": model_url,
        "GLASSBOX_EXPLAINER_REDIS_URL": redis_url,
        "GLASSBOX_EXPLAINER_JOB_LEASE_S": str(LEASE_S),
        "GLASSBOX_EXPLAINER_JOB_RETRIES": str(RETRIES),
        "GLASSBOX_EXPLAINER_MAX_PENDING": str(JOBS),  # every job is accepted: the count is about the kill
    }
    process, ports = seldon_microservice(
        name, "glassbox.explain.component.LoanExplainer", workdir / f"{name}.log", env=env, threads=4
    )
    return process, f"http://{LOOPBACK}:{ports['http']}"


def running_on(process: ManagedProcess, job_ids: list[str], redis_url: str) -> list[str]:
    """Ids of the jobs a worker of ``process`` (its process group) is running, from rq's records."""
    import redis
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    client = redis.Redis.from_url(redis_url)
    running = []
    for job in Job.fetch_many(job_ids, connection=client, serializer=JSONSerializer):
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED or not job.worker_name:
            continue
        pid = client.hget(f"rq:worker:{job.worker_name}", "pid")
        if pid is not None and os.getpgid(int(pid)) == process.pid:
            running.append(job.id)
    return running


def explainer_killed(artifacts: Path, rows: np.ndarray, workdir: Path) -> dict:
    """Run the scenario; returns its counts (``lost`` must be 0)."""
    redis_server, redis_url = start_redis(workdir)
    model, model_url = start_model(artifacts, workdir)
    started = [start_explainer(name, artifacts, workdir, model_url, redis_url) for name in ("a", "b")]
    (victim, victim_url), (survivor, survivor_url) = started
    processes = [redis_server, model, victim, survivor]
    try:
        with ThreadPoolExecutor(2) as pool:  # side by side: each takes a while to load alibi
            list(pool.map(lambda process: process.start(timeout=300), [victim, survivor]))
        session = requests.Session()
        jobs: list[str] = []
        for i in range(JOBS):
            pair = rows[(2 * i) % len(rows) : (2 * i) % len(rows) + 2].tolist()
            url = (victim_url, survivor_url)[i % 2] + "/api/v1.0/explain"
            body = {"jsonData": {"instances": pair, "seed": 1000 + i, "job": "submit"}}
            reply = session.post(url, json=body, timeout=30)
            reply.raise_for_status()
            jobs.append(reply.json()["jsonData"]["job"]["id"])

        deadline = time.monotonic() + 120
        while not (in_flight := running_on(victim, jobs, redis_url)):
            if time.monotonic() > deadline:
                raise TimeoutError("explainer A ran none of the jobs within 120 s")
            time.sleep(0.02)
        victim.kill()
        killed_at = time.monotonic()
        after_kill = Counter(poll(session, survivor_url, job_id)["status"] for job_id in jobs)

        final: dict[str, dict] = {}
        deadline = killed_at + DEADLINE_S
        while len(final) < len(jobs) and time.monotonic() < deadline:
            for job_id in jobs:
                if job_id not in final:
                    state = poll(session, survivor_url, job_id)
                    if state["status"] in ("done", "failed", "unknown"):
                        final[job_id] = {**state, "at": time.monotonic()}
            time.sleep(0.2)
    finally:
        for process in reversed(processes):
            process.stop()

    done = [s for s in final.values() if s["status"] == "done"]
    failed = [s for s in final.values() if s["status"] == "failed" and s.get("error", {}).get("message")]
    return {
        "scenario": "one of two explainer processes killed (SIGKILL) with jobs in flight",
        "submitted": len(jobs),
        "running_on_killed_process": len(in_flight),
        "status_just_after_kill": dict(after_kill),
        "completed": len(done),
        "failed_with_reason": len(failed),
        "failure_reasons": sorted({s["error"]["message"] for s in failed}),
        "lost": len(jobs) - len(done) - len(failed),
        "re_run_after_kill": sum(1 for s in final.values() if s.get("attempt") == 2),
        "last_job_end_after_kill_s": round(
            max((s["at"] for s in final.values()), default=killed_at) - killed_at, 1
        ),
        "lease_s": LEASE_S,
        "retries": RETRIES,
    }


def poll(session: requests.Session, url: str, job_id: str) -> dict:
    reply = session.get(f"{url}/api/v1.0/explain/jobs/{job_id}", timeout=30)
    if reply.status_code == 404:
        return {"status": "unknown"}
    reply.raise_for_status()
    return reply.json()["job"]


def main() -> Path:
    from benchmarks.explain import artifacts_dir, benchmark_rows

    with tempfile.TemporaryDirectory(prefix="glassbox-chaos-explainer-") as tmp:
        result = explainer_killed(artifacts_dir(), benchmark_rows(), Path(tmp))
    notes = (
        f"{JOBS} jobs of 2 rows (distinct seeds) submitted alternately to two explainer processes on one "
        f"private Redis, lease {LEASE_S} s, {RETRIES} re-run(s); explainer A killed (SIGKILL) as soon as it "
        f"ran one; every job polled on B. {os.cpu_count()} CPUs. `lost` must be 0."
    )
    table = [{"measure": k, "value": v} for k, v in result.items() if k != "scenario"]
    return write_results("chaos_explainer", table, ["measure", "value"], notes)


if __name__ == "__main__":
    print(main().read_text())
