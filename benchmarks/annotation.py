"""Bulk intake throughput of the annotation queue, through the real HTTP service, on both stores.

Goal (issue 5): >= 2,000 records/s into SQLite and >= 1,000 records/s into PostgreSQL. Records are
real Adult rows in the intake format, sent in bulks of 500 (the default ``max_bulk``) by two
concurrent clients; every id is new, so each record is a real insert.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.common import write_results
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, venv_bin

REPO = Path(__file__).resolve().parents[1]
RECORDS = 20_000
BULK = 500
CLIENTS = 2
OWNER_KEY = "gbq_bench-owner"
POSTGRES_DSN = os.environ.get("GLASSBOX_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def intake_bodies(run: str) -> list[bytes]:
    """``RECORDS`` records built from the bundled Adult rows, pre-encoded as bulk bodies."""
    from glassbox.contract.schema import decode_row
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset

    data = load_dataset(load_config(REPO / "pipeline/configs/adult.yaml"))
    records = []
    for i in range(RECORDS):
        row = data.X[i % len(data.X)]
        p = 0.5 + (i % 20) / 100
        records.append(
            {
                "id": f"bench-{run}-{i}:0",
                "source": "prediction",
                "features": dict(zip(data.feature_names, row.tolist(), strict=True)),
                "decoded": decode_row(row, data.feature_names, data.category_map),
                "probabilities": {"<=50K": p, ">50K": 1 - p},
                "predicted_label": "<=50K",
                "certainty": {"max_probability": p, "margin": 2 * p - 1, "entropy": 0.6},
                "model_name": "loanclassifier",
                "model_version": "bench",
                "request_id": f"bench-{run}-{i}",
                "timestamp": "2026-11-23T03:00:00Z",
                "explanation": None,
                "metadata": {},
            }
        )
    return [json.dumps({"records": records[i : i + BULK]}).encode() for i in range(0, RECORDS, BULK)]


def measure(store: str, env: dict[str, str], workdir: Path) -> dict:
    port = free_port()
    proc = ManagedProcess(
        name=f"queue-{store}",
        argv=[venv_bin("glassbox"), "queue", "serve", "--host", LOOPBACK, "--port", str(port)],
        log_path=workdir / f"queue-{store}.log",
        env={**env, "GLASSBOX_QUEUE_OWNER_API_KEY": OWNER_KEY},
        health_url=f"http://{LOOPBACK}:{port}/health",
    )
    proc.start(timeout=60)
    try:
        bodies = intake_bodies(uuid.uuid4().hex[:8])
        url = f"http://{LOOPBACK}:{port}/api/v1/records/bulk"
        headers = {"X-API-Key": OWNER_KEY, "Content-Type": "application/json"}
        sessions = [requests.Session() for _ in range(CLIENTS)]

        def send(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            answer = sessions[i % CLIENTS].post(url, data=bodies[i], headers=headers, timeout=120)
            answer.raise_for_status()
            return answer.json()["created"], time.perf_counter() - start

        send(0)  # warm-up bulk (connection set-up, first transaction): not counted
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            results = list(pool.map(send, range(1, len(bodies))))
        elapsed = time.perf_counter() - start
        created = sum(n for n, _ in results)
        latencies = sorted(t for _, t in results)
        return {
            "store": store,
            "records": created,
            "seconds": elapsed,
            "records_per_s": created / elapsed,
            "bulk_p50_ms": latencies[len(latencies) // 2] * 1000,
            "bulk_max_ms": latencies[-1] * 1000,
            "goal_records_per_s": 2000 if store == "sqlite" else 1000,
        }
    finally:
        proc.stop()


def main() -> Path:
    rows = []
    with tempfile.TemporaryDirectory(prefix="glassbox-bench-queue-") as tmp:
        workdir = Path(tmp)
        rows.append(
            measure("sqlite", {"GLASSBOX_QUEUE_DATABASE_URL": f"sqlite:///{workdir / 'queue.db'}"}, workdir)
        )
        import psycopg

        schema = f"gbbench_{uuid.uuid4().hex[:10]}"
        try:
            env = {"GLASSBOX_QUEUE_DATABASE_URL": POSTGRES_DSN, "GLASSBOX_QUEUE_DATABASE_SCHEMA": schema}
            rows.append(measure("postgresql", env, workdir))
        finally:
            with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    for row in rows:
        row["meets_goal"] = row["records_per_s"] >= row["goal_records_per_s"]
    notes = (
        f"Bulk intake through `glassbox queue serve` (one uvicorn process): {RECORDS} new records in "
        f"bulks of {BULK}, {CLIENTS} concurrent clients, loopback HTTP. One transaction per bulk "
        "(multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING id)."
    )
    columns = ["store", "records", "seconds", "records_per_s", "bulk_p50_ms", "bulk_max_ms"]
    columns += ["goal_records_per_s", "meets_goal"]
    return write_results("annotation", rows, columns, notes)


if __name__ == "__main__":
    print(main().read_text())
