"""Background explanations: computed from intake on by the real explainer microservice, by two queue
replicas that never compute the same record, resumed after a worker died or a queue stopped; and a
usable record with a visible failed state (retried, then failed for good) when the explainer is down."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import QUEUE_FEATURES, start_explainer_service
from glassbox.annotation.records import validate_bulk
from glassbox.annotation.store import open_store
from glassbox.stack.process import free_port

from .explain_support import explainer_methods, queue_env
from .feedback_support import adult_records, wait_for


def explanations_served(metrics_url: str) -> float:
    """Explanations the explainer answered: computed (its latency histogram's count) plus cache hits."""
    total = 0.0
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name in (
                "glassbox_explainer_latency_seconds_count",
                "glassbox_explainer_cache_hits_total",
            ):
                total += sample.value
    return total


def queue_samples(queue, name: str) -> dict[str, float]:
    """One of the queue's metric families, by its only label's value."""
    found = {}
    for family in text_string_to_metric_families(requests.get(f"{queue.url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == name:
                found[next(iter(sample.labels.values()))] = sample.value
    return found


def states(queue, ids: list[str]) -> dict[str, str | None]:
    return {i: queue.call("GET", f"/api/v1/records/{i}").json()["explanation_state"] for i in ids}


@pytest.mark.slow
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_two_replicas_explain_each_record_once_in_the_background_and_resume_a_dead_workers(
    model_service_factory, trained_artifacts, start_queue, database, adult_test_rows, processes, tmp_path
) -> None:
    model = model_service_factory()
    explainer = start_explainer_service(trained_artifacts, tmp_path, f"{model.url}/api/v1.0/predictions")
    processes.append(explainer.process)
    rows = adult_test_rows[:6]
    left_over, claimed_by_the_dead, *fresh = adult_records(rows, "bg")

    # Before any replica runs: one record owed an explanation by a queue that stopped right after
    # intake, one claimed by a worker that died mid-explanation (its lease runs out in 3 s).
    store = open_store(*database)
    try:
        for record in (claimed_by_the_dead, left_over):
            valid, _ = validate_bulk([record])
            assert store.insert_records(valid, explain=True) == {record["id"]}
            if record is claimed_by_the_dead:
                [dead] = store.claim_explanations(1, 3.0, 5)
                assert dead["id"] == claimed_by_the_dead["id"]
    finally:
        store.close()

    env = {
        "GLASSBOX_QUEUE_EXPLAINER_URL": explainer.url,
        "GLASSBOX_QUEUE_EXPLAIN_SWEEP_SECONDS": "0.5",
        "GLASSBOX_QUEUE_EXPLAIN_CONCURRENCY": "2",
        **queue_env(trained_artifacts),
    }
    served_before = explanations_served(explainer.metrics_url)
    replicas = [start_queue(**env), start_queue(**env)]
    started = time.monotonic()
    for i, replica in enumerate(replicas):  # each replica takes half of the new records
        answer = replica.call("POST", "/api/v1/records/bulk", json={"records": fresh[2 * i : 2 * i + 2]})
        assert answer.json()["created"] == 2, answer.text
    intake_seconds = time.monotonic() - started
    assert intake_seconds < 2.0  # intake does not wait (test_intake_and_the_page_never_wait... shows it)

    methods = explainer_methods(trained_artifacts)
    ids = [record["id"] for record in (left_over, claimed_by_the_dead, *fresh)]
    wait_for(lambda: set(states(replicas[0], ids).values()) == {"done"}, timeout=240, every=0.5)

    # Each record computed once between both replicas; the dead worker's claim counts one attempt.
    assert explanations_served(explainer.metrics_url) - served_before == len(ids)
    for record, row in zip((left_over, claimed_by_the_dead, *fresh), rows, strict=True):
        stored = replicas[1].call("GET", f"/api/v1/records/{record['id']}").json()
        assert stored["explanation_attempts"] == (2 if record["id"] == dead["id"] else 1), stored["id"]
        assert stored["explanation_error"] is None and stored["explanation_next_attempt_at"] is None
        explanation = stored["explanation"]
        assert explanation["instance"]["Age"] == row[0]  # the explainer saw this record's features
        assert isinstance(explanation["anchor"], list) and 0 <= explanation["precision"] <= 1
        assert explanation.get("methods", ["anchors"]) == methods
        if "attributions" in methods:
            assert set(explanation["attributions"]["values"]) == set(QUEUE_FEATURES)
            assert stored["reason_codes"] == explanation["reason_codes"] is not None
        if "counterfactuals" in methods:  # each one checked against the served model
            assert all(item["verified"] for item in explanation["counterfactuals"]["items"])
        lineage = replicas[0].call("GET", f"/api/v1/lineage/{record['id']}").json()["records"][0]
        assert lineage["explanation_state"]["state"] == "done"
        assert lineage["explanations"][0]["reason_codes"] == stored["reason_codes"]
    attempts = "glassbox_queue_explanation_attempts_total"
    assert sum(queue_samples(replica, attempts)["done"] for replica in replicas) == len(ids)
    assert queue_samples(replicas[0], "glassbox_queue_explanation_records")["done"] == len(ids)

    # The page opens at once: no explainer call on the request path.
    page = requests.Session()
    page.post(f"{replicas[0].url}/review/login", data={"api_key": replicas[0].owner_key}, timeout=10)
    html = page.get(f"{replicas[0].url}/review/records/{fresh[0]['id']}", timeout=10).text
    assert 'id="anchor"' in html and 'data-state="pending"' not in html
    assert explanations_served(explainer.metrics_url) - served_before == len(ids)


@pytest.fixture
def silent_explainer() -> Iterator[str]:
    """The URL of a port that takes connections and never answers: an explainer stuck on a request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes the handshakes; nothing ever reads or answers
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_intake_and_the_page_never_wait_for_the_explainer(
    start_queue, queue_record, silent_explainer: str
) -> None:
    queue = start_queue(
        GLASSBOX_QUEUE_EXPLAINER_URL=silent_explainer,
        GLASSBOX_QUEUE_EXPLAINER_TIMEOUT="30",
        GLASSBOX_QUEUE_EXPLAIN_LEASE_SECONDS="40",
    )
    started = time.monotonic()
    bulk = {"records": [queue_record(i) for i in range(3)]}
    assert queue.call("POST", "/api/v1/records/bulk", json=bulk).json()["created"] == 3
    assert time.monotonic() - started < 2.0

    def attempts() -> list[int]:
        listed = queue.call("GET", "/api/v1/records?limit=10").json()["records"]
        return sorted(record["explanation_attempts"] for record in listed)

    # Two lanes (explain_concurrency) each wait on the explainer with a record claimed; the third is due.
    wait_for(lambda: attempts() == [0, 1, 1])
    page = requests.Session()
    page.post(f"{queue.url}/review/login", data={"api_key": queue.owner_key}, timeout=10)
    started = time.monotonic()
    html = page.get(f"{queue.url}/review/records/req-0:0", timeout=10).text
    assert time.monotonic() - started < 2.0 and 'data-state="pending"' in html
    record = queue.call("GET", "/api/v1/records/req-0:0").json()
    assert record["explanation_state"] == "pending" and record["explanation"] is None


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_unreachable_explainer_fails_visibly_retries_then_gives_up(start_queue, queue_record) -> None:
    queue = start_queue(
        GLASSBOX_QUEUE_EXPLAINER_URL=f"http://127.0.0.1:{free_port()}",
        GLASSBOX_QUEUE_EXPLAINER_TIMEOUT="2",
        GLASSBOX_QUEUE_EXPLAIN_LEASE_SECONDS="7",
        GLASSBOX_QUEUE_EXPLAIN_BACKOFF_SECONDS="2",
        GLASSBOX_QUEUE_EXPLAIN_MAX_ATTEMPTS="2",
        GLASSBOX_QUEUE_EXPLAIN_SWEEP_SECONDS="0.2",
    )
    bulk = {"records": [queue_record(1)]}
    assert queue.call("POST", "/api/v1/records/bulk", json=bulk).json()["created"] == 1

    def record() -> dict:
        return queue.call("GET", "/api/v1/records/req-1:0").json()

    first = wait_for(lambda: (r := record())["explanation_state"] == "failed" and r)
    assert first["explanation_attempts"] == 1 and first["explanation"] is None
    assert first["explanation_error"].startswith("explainer at http://127.0.0.1:")
    assert first["explanation_next_attempt_at"] > time.time() - 1  # a retry is scheduled
    lineage = queue.call("GET", "/api/v1/lineage/req-1:0").json()["records"][0]["explanation_state"]
    assert lineage["state"] == "failed" and lineage["last_error"] == first["explanation_error"]

    def failed_for_good() -> dict | None:
        found = record()
        given_up = found["explanation_attempts"] == 2 and found["explanation_state"] == "failed"
        return found if given_up else None

    final = wait_for(failed_for_good)
    assert final["explanation_next_attempt_at"] is None  # failed for good after max_attempts
    assert queue_samples(queue, "glassbox_queue_explanation_attempts_total") == {
        "done": 0.0,
        "retry": 1.0,
        "failed": 1.0,
    }
    by_state = queue_samples(queue, "glassbox_queue_explanation_records")
    assert by_state == {"pending": 0, "done": 0, "failed": 1}

    # The record stays usable, and a retry can be asked for (owed again, attempts from zero).
    again = queue.call("POST", "/api/v1/records/req-1:0/explanation")
    assert again.status_code == 200, again.text
    assert again.json()["explanation_attempts"] in (0, 1)  # from zero (the worker may be at it already)
    assert wait_for(failed_for_good)["explanation_next_attempt_at"] is None  # ...and given up again
    assert queue.call("POST", "/api/v1/records/req-1:0/responses", json={"label": ">50K"}).json()["completed"]
    assert queue.call("POST", "/api/v1/records/nope/explanation").status_code == 404


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_without_an_explainer_nothing_is_owed_and_a_retry_is_refused(start_queue, queue_record) -> None:
    queue = start_queue()
    bulk = {"records": [queue_record(1)]}
    assert queue.call("POST", "/api/v1/records/bulk", json=bulk).json()["created"] == 1
    record = queue.call("GET", "/api/v1/records/req-1:0").json()
    assert record["explanation_state"] is None and record["explanation"] is None
    refused = queue.call("POST", "/api/v1/records/req-1:0/explanation")
    assert refused.status_code == 409 and "no explainer is set" in refused.json()["error"]
