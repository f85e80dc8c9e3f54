"""PostgreSQL restarted under the queue, on a private server of the test's own (never the shared one):
the pool replaces the connections the restart closed, the queue answers 503 while the database is
away and again within 5 s of its return, and intake through the model's outbox loses no record."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from glassbox.annotation.records import RecordIn
from glassbox.annotation.store import open_store
from glassbox.errors import UpstreamUnavailable

from .conftest import OWNER_KEY
from .feedback_support import wait_for

pytestmark = pytest.mark.slow

BACK_WITHIN_S = 5.0


@pytest.fixture
def database(private_postgres) -> tuple[str, str]:
    """Every queue of this module runs on the private server (``start_queue`` reads this fixture)."""
    return private_postgres.dsn, ""


@pytest.fixture
def records_in(queue_record):
    """``records_in(n, first=0)``: n validated toy records."""

    return lambda n, first=0: [RecordIn.model_validate(queue_record(i)) for i in range(first, first + n)]


def test_the_pool_replaces_what_a_restart_closed_and_answers_503_meanwhile(
    private_postgres, records_in
) -> None:
    store = open_store(private_postgres.dsn, pool_size=4, timeout=2)
    try:
        store.insert_records(records_in(40))
        together = threading.Barrier(4)

        def busy(_: int) -> int:
            with store.transaction() as cur:
                together.wait(10)  # four transactions at once: four connections in the pool
                return cur.execute("SELECT COUNT(*) AS n FROM records").fetchone()["n"]

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(busy, range(4))) == [40] * 4
        assert store._pool.get_stats()["pool_size"] == 4

        # Restarted while idle: all four pooled connections are closed, and nobody has noticed yet.
        private_postgres.stop()
        private_postgres.start()
        started = time.monotonic()
        assert store.list_records(limit=1)[1] == 40  # the first request after the restart succeeds...
        assert time.monotonic() - started < BACK_WITHIN_S
        assert store._pool.get_stats().get("connections_lost", 0) >= 4  # ...because the check replaced them
        with ThreadPoolExecutor(4) as pool:  # and so do all the next ones, several at once
            assert list(pool.map(lambda _: store.list_records(limit=1)[1], range(20))) == [40] * 20

        # Away: a clear 503 naming PostgreSQL, after the pool's timeout, not a hang or a driver error.
        private_postgres.stop()
        asked = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="PostgreSQL unavailable") as failure:
            store.schema_version()
        assert failure.value.status_code == 503 and time.monotonic() - asked < 10
        private_postgres.start()
        back = time.monotonic()
        assert store.insert_records(records_in(1, first=1000)) == {"req-1000:0"}
        assert time.monotonic() - back < BACK_WITHIN_S
    finally:
        store.close()


def test_a_restart_during_intake_loses_no_record(
    private_postgres, start_queue, model_service_factory, adult_test_rows
) -> None:
    queue = start_queue(GLASSBOX_QUEUE_DATABASE_TIMEOUT="2")
    model = model_service_factory(
        env={
            "GLASSBOX_MODEL_QUEUE_URL": queue.url,
            "GLASSBOX_MODEL_QUEUE_API_KEY": OWNER_KEY,
            "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": "1.01",  # every row goes to the queue
            "GLASSBOX_MODEL_RETRY_MAX_SECONDS": "1",
        }
    )
    rows = adult_test_rows.tolist()
    answered, stop = [0], threading.Event()

    def predict() -> None:  # bounded: at most 3,000 requests of 4 rows
        session = requests.Session()
        for i in range(3000):
            if stop.is_set():
                return
            batch = [rows[(4 * i + k) % len(rows)] for k in range(4)]
            answer = session.post(
                f"{model.url}/api/v1.0/predictions", json={"data": {"ndarray": batch}}, timeout=30
            )
            assert answer.status_code == 200, answer.text  # predictions never depend on the queue
            answered[0] += 4

    load = threading.Thread(target=predict, daemon=True)
    load.start()
    try:
        wait_for(lambda: answered[0] >= 200 and queue_total(queue) > 0)  # intake is flowing
        private_postgres.stop()
        during = answered[0]
        health = requests.get(f"{queue.url}/health", timeout=30)
        assert health.status_code == 503 and "PostgreSQL unavailable" in health.json()["error"]
        wait_for(
            lambda: answered[0] >= during + 200
        )  # the model goes on answering; its outbox holds the rows
        private_postgres.start()
        back = time.monotonic()
        wait_for(lambda: requests.get(f"{queue.url}/health", timeout=30).status_code == 200, every=0.05)
        assert time.monotonic() - back < BACK_WITHIN_S
        resumed = answered[0]
        wait_for(lambda: answered[0] >= resumed + 200)
    finally:
        stop.set()
        load.join(60)
    # Nothing lost: every row the model answered is a record in the queue, once (ids are unique keys).
    total = wait_for(lambda: (n := queue_total(queue)) >= answered[0] and n, timeout=90)
    assert total == answered[0]
    assert model.metric_samples().get("glassbox_model_forward_dropped_total", 0) == 0


def queue_total(queue) -> int:
    answer = queue.call("GET", "/api/v1/records", params={"limit": 1}, key=OWNER_KEY)
    return answer.json()["total"] if answer.status_code == 200 else 0
