"""The review queue's list view at 100,000 records, on SQLite and PostgreSQL.

Records are bulk-inserted through the store (10,000 per transaction), then a share is marked
completed, discarded or disagreeing directly in the table, as reviewing would leave them. Each query
is timed twice, in-process: ``QueueService.list_records`` (the query the API and the page share)
and the whole ``GET /review/records`` page (signed-in session, HTML rendered) through Starlette's
``TestClient``, so no network is counted. Median and p95 over ``REPEATS`` runs after one warm-up.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from benchmarks.common import write_results

RECORDS = 100_000
CHUNK = 10_000
REPEATS = 15
OWNER_KEY = "gbq_bench-list-owner"
POSTGRES_DSN = os.environ.get("GLASSBOX_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
QUERIES = {
    "first page, least certain": {},
    "pending, least certain": {"status": "pending"},
    "training-audit, highest loss": {"source": "training-audit", "sort": "highest_loss"},
    "newest": {"sort": "newest"},
    "certainty 0.6-0.7, label, version": {
        "certainty_min": "0.6",
        "certainty_max": "0.7",
        "predicted_label": ">50K",
        "model_version": "v1",
    },
    "reviewers disagree": {"has_disagreement": "true"},
    "deepest page (offset 10,000)": {"offset": "10000"},
}


def records(start: int, count: int) -> list:
    from glassbox.annotation.records import RecordIn

    built = []
    for i in range(start, start + count):
        p = 0.5 + (i * 7919 % 5000) / 10_000  # 0.50 ... 0.9998, spread over the ids
        audit = i % 5 == 0
        label = ">50K" if i % 3 == 0 else "<=50K"
        other = "<=50K" if label == ">50K" else ">50K"
        built.append(
            RecordIn.model_validate(
                {
                    "id": f"bench-{i}:0",
                    "source": "training-audit" if audit else "prediction",
                    "features": {"Age": float(i % 90), "Hours per week": float(i % 60)},
                    "decoded": {"Age": str(i % 90), "Hours per week": str(i % 60)},
                    "probabilities": {label: p, other: 1 - p},
                    "predicted_label": label,
                    "certainty": {"max_probability": p, "margin": 2 * p - 1, "entropy": 0.6},
                    "model_name": "loanclassifier",
                    "model_version": f"v{i % 3 + 1}",
                    "request_id": f"bench-{i}",
                    "timestamp": "2026-11-23T03:00:00Z",
                    "explanation": None,
                    "metadata": {"loss": (i * 31 % 1000) / 40} if audit else {},
                }
            )
        )
    return built


def fill(service) -> float:
    """Insert ``RECORDS`` records through the store and review a share of them; returns seconds."""
    began = time.perf_counter()
    for start in range(0, RECORDS, CHUNK):
        service.store.insert_records(records(start, CHUNK))
    with service.store.transaction(write=True) as cur:
        # 30 % completed, 1 % discarded, 2 % disagreeing (what add_response would have set).
        cur.execute(
            "UPDATE records SET status = 'completed', final_label = predicted_label WHERE id LIKE '%3:0'"
        )
        cur.execute(
            "UPDATE records SET status = 'completed', final_label = predicted_label WHERE id LIKE '%7:0'"
        )
        cur.execute(
            "UPDATE records SET status = 'completed', final_label = predicted_label WHERE id LIKE '%9:0'"
        )
        cur.execute("UPDATE records SET status = 'discarded' WHERE id LIKE '%05:0'")
        cur.execute("UPDATE records SET disagreement = 1 WHERE id LIKE '%11:0' OR id LIKE '%62:0'")
    if service.store.dialect == "postgresql":  # what autovacuum's analyze does shortly after a bulk load
        with service.store.transaction(write=True) as cur:
            cur.execute("ANALYZE records")
    return time.perf_counter() - began


def timed(call) -> tuple[float, float]:
    call()  # warm-up: connections, caches, templates
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def measure(store_name: str, url: str, schema: str) -> list[dict]:
    from starlette.testclient import TestClient

    from glassbox.annotation.app import create_app
    from glassbox.annotation.service import QueueService
    from glassbox.annotation.settings import QueueSettings

    settings = QueueSettings(database_url=url, database_schema=schema, owner_api_key=OWNER_KEY)
    service = QueueService(settings)
    rows = []
    with TestClient(create_app(settings, service)) as client:
        fill_seconds = fill(service)
        owner = service.authenticate(OWNER_KEY)
        signed_in = client.post("/review/login", data={"api_key": OWNER_KEY}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        for name, query in QUERIES.items():
            total = service.list_records(owner, query)["total"]
            service_p50, service_p95 = timed(lambda q=query: service.list_records(owner, q))

            def page(q=query) -> None:
                answer = client.get(f"/review/records?{urlencode(q)}")
                assert answer.status_code == 200, answer.text[:300]

            page_p50, page_p95 = timed(page)
            rows.append(
                {
                    "store": store_name,
                    "query": name,
                    "matching": total,
                    "query p50 ms": round(service_p50, 1),
                    "query p95 ms": round(service_p95, 1),
                    "page p50 ms": round(page_p50, 1),
                    "page p95 ms": round(page_p95, 1),
                    "fill s": round(fill_seconds, 1),
                }
            )
    return rows


def main() -> Path:
    rows = []
    with tempfile.TemporaryDirectory(prefix="glassbox-list-bench-") as tmp:
        rows += measure("SQLite", f"sqlite:///{Path(tmp) / 'queue.db'}", "")
    import psycopg

    schema = f"bench_list_{uuid.uuid4().hex[:10]}"
    try:
        rows += measure("PostgreSQL", POSTGRES_DSN, schema)
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    notes = (
        f"{RECORDS:,} records; query = QueueService.list_records (one page of 50 and the total), "
        "page = GET /review/records rendered, both in-process (no network); "
        f"median and p95 of {REPEATS} runs after a warm-up; 2-core machine shared with other work."
    )
    columns = [
        "store",
        "query",
        "matching",
        "query p50 ms",
        "query p95 ms",
        "page p50 ms",
        "page p95 ms",
        "fill s",
    ]
    return write_results("queue_list", rows, columns, notes)


if __name__ == "__main__":
    print(main().read_text())
