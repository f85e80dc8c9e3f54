"""Feedback sender throughput: consensus labels delivered per second to a real model microservice, with
one and with two queue replicas (`glassbox queue serve`, each with its sender) on one PostgreSQL database.

Per case: a fresh schema on PostgreSQL (``GLASSBOX_TEST_POSTGRES_DSN``), a fresh ``LoanClassifier``
microservice (Seldon, 2 gunicorn workers, its own feedback log) and the replicas (sweep every 0.1 s), whose
senders have 1 post in flight (sequential: how replicas add up) or 4 (the default).
``RECORDS`` real Adult rows go in through the intake; then one transaction completes them all, as
``add_response`` does (status, final label, feedback owed), at t0. The time until the model's feedback
log holds every one of them is the senders' time; labels/s = RECORDS / that time. Each case also
checks that every label arrived exactly once.

Settings: GLASSBOX_BENCH_FEEDBACK_RECORDS (default 2000), GLASSBOX_BENCH_ARTIFACTS (default
artifacts/loanclassifier, trained first if missing).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import requests

from benchmarks.common import artifacts_dir, start_queue, write_results
from glassbox.stack.process import LOOPBACK, ManagedProcess, seldon_microservice

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipeline/configs/adult.yaml"
RECORDS = int(os.environ.get("GLASSBOX_BENCH_FEEDBACK_RECORDS", "2000"))
POSTGRES_DSN = os.environ.get("GLASSBOX_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
OWNER_KEY = "gbq_bench-feedback-owner"
MODEL_WORKERS = 2


def intake_records(run: str, n: int = RECORDS) -> list[dict]:
    """``n`` intake records over real Adult rows (the model accepts their feedback)."""
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset

    data = load_dataset(load_config(CONFIG))
    records = []
    for i in range(n):
        row = data.X[i % len(data.X)]
        p = 0.5 + (i % 40) / 100
        records.append(
            {
                "id": f"fb-{run}-{i}:0",
                "source": "prediction",
                "features": dict(zip(data.feature_names, row.tolist(), strict=True)),
                "probabilities": {"<=50K": p, ">50K": round(1 - p, 10)},
                "predicted_label": "<=50K",
                "certainty": {"max_probability": p, "margin": 2 * p - 1, "entropy": 0.6},
                "model_name": "loanclassifier",
                "model_version": "bench",
                "request_id": f"fb-{run}-{i}",
            }
        )
    return records


def queue_env(schema: str, model_url: str, concurrency: int) -> dict[str, str]:
    return {
        "GLASSBOX_QUEUE_DATABASE_URL": POSTGRES_DSN,
        "GLASSBOX_QUEUE_DATABASE_SCHEMA": schema,
        "GLASSBOX_QUEUE_OWNER_API_KEY": OWNER_KEY,
        "GLASSBOX_QUEUE_FEEDBACK_URL": model_url,
        "GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS": "0.1",
        "GLASSBOX_QUEUE_FEEDBACK_CONCURRENCY": str(concurrency),
    }


def delivered(log: Path) -> dict[str, int]:
    if not log.exists():
        return {}
    with sqlite3.connect(log, timeout=30) as db:
        return dict(db.execute("SELECT request_id, COUNT(*) FROM feedback GROUP BY request_id").fetchall())


def sent_by(url: str) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "glassbox_queue_feedback_attempts_total" and sample.labels["outcome"] == "sent":
                return int(sample.value)
    return 0


def measure(replicas: int, concurrency: int, artifacts: Path, workdir: Path) -> dict:
    run = uuid.uuid4().hex[:8]
    schema = f"gbbench_{run}"
    started: list[ManagedProcess] = []
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        model, ports = seldon_microservice(
            "model",
            "glassbox.serving.component.LoanClassifier",
            workdir / f"model-{run}.log",
            env={
                "GLASSBOX_MODEL_ARTIFACTS": str(artifacts),
                "GLASSBOX_MODEL_OUTBOX_DIR": str(workdir / f"outbox-{run}"),
                "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
                "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
            },
            workers=MODEL_WORKERS,
        )
        started.append(model.start(timeout=120))
        model_url = f"http://{LOOPBACK}:{ports['http']}"
        queues = []
        for k in range(replicas):
            proc, url = start_queue(workdir, f"queue-{run}-{k}", queue_env(schema, model_url, concurrency))
            started.append(proc)
            queues.append(url)
        records = intake_records(run)
        session = requests.Session()
        for start in range(0, len(records), 500):
            answer = session.post(
                f"{queues[0]}/api/v1/records/bulk",
                json={"records": records[start : start + 500]},
                headers={"X-API-Key": OWNER_KEY},
                timeout=120,
            )
            answer.raise_for_status()
        from glassbox.annotation.store import open_store

        store = open_store(POSTGRES_DSN, schema, migrate=False)
        try:
            t0 = time.time()
            with store.transaction(write=True) as cur:  # what add_response does, for every record at once
                cur.execute(
                    "UPDATE records SET status = 'completed', final_label = predicted_label, "
                    "completed_at = $1, feedback_state = 'pending', feedback_next_attempt_at = $1 "
                    "WHERE status = 'pending'",
                    (t0,),
                )
        finally:
            store.close()
        started_at = time.monotonic()
        log = workdir / f"outbox-{run}" / "feedback.sqlite3"
        deadline = started_at + 600
        while sum(delivered(log).values()) < RECORDS and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = time.monotonic() - started_at
        counts = delivered(log)
        return {
            "replicas": replicas,
            "posts_in_flight_per_sender": concurrency,
            "records": RECORDS,
            "delivered": len(counts),
            "duplicates": sum(counts.values()) - len(counts),
            "seconds": round(seconds, 2),
            "labels_per_s": round(len(counts) / seconds, 1),
            "sent_by_replica": " / ".join(str(sent_by(url)) for url in queues),
        }
    finally:
        for proc in reversed(started):
            proc.stop()
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> Path:
    artifacts = artifacts_dir()
    workdir = Path(tempfile.mkdtemp(prefix="glassbox-bench-feedback-"))
    # Sequential senders (1 post in flight) show how replicas add up; the default (4) how far one goes.
    rows = [
        measure(replicas, concurrency, artifacts, workdir) for concurrency in (1, 4) for replicas in (1, 2)
    ]
    load = os.getloadavg()[0]
    notes = (
        f"{RECORDS} consensus labels completed at once, delivered as Seldon feedback to a real "
        f"LoanClassifier microservice ({MODEL_WORKERS} gunicorn workers) by 1 and by 2 queue replicas on "
        "one PostgreSQL database, senders with 1 and with 4 posts in flight "
        "(`GLASSBOX_QUEUE_FEEDBACK_CONCURRENCY`, default 4); "
        "time until the model's feedback log held them all. "
        f"{os.cpu_count()} CPUs shared by the model, the replicas and PostgreSQL "
        f"(load average {load:.1f} at the end)."
    )
    columns = [
        "replicas",
        "posts_in_flight_per_sender",
        "records",
        "delivered",
        "duplicates",
        "seconds",
        "labels_per_s",
        "sent_by_replica",
    ]
    return write_results("feedback", rows, columns, notes)


if __name__ == "__main__":
    print(main().read_text())
