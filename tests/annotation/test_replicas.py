"""The queue at several processes: two `glassbox queue serve` replicas on one PostgreSQL database, and
one queue with two uvicorn workers. Every consensus label reaches the real model microservice once,
counted there (its feedback log and ``glassbox_model_feedback_total``); intake stays idempotent."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from glassbox.stack.process import process_group_members

from .feedback_support import adult_records, feedback_log, model_feedback_total, wait_for

pytestmark = pytest.mark.slow

SENDER = {
    "GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS": "0.2",  # both senders look often: they compete for every row
    "GLASSBOX_QUEUE_SESSION_SECRET": "replicas-share-one-secret",
}
LABELS = ("<=50K", ">50K")


def queue_metric(queue, name: str) -> float:
    for family in text_string_to_metric_families(queue.call("GET", "/metrics").text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            if f"{sample.name}{{{labels}}}" == name:
                return sample.value
    raise KeyError(name)


def send_everywhere(queues: list, records: list[dict], copies: int) -> Counter:
    """Every record to every queue ``copies`` times, bulks of 50 in shuffled order, all at once."""
    bulks = [records[i : i + 50] for i in range(0, len(records), 50)]
    jobs = [(queue, bulk) for queue in queues for _ in range(copies) for bulk in bulks]
    random.Random(0).shuffle(jobs)

    def send(job) -> dict:
        answer = job[0].call("POST", "/api/v1/records/bulk", json={"records": job[1]})
        assert answer.status_code == 200, answer.text
        return answer.json()

    totals: Counter = Counter()
    with ThreadPoolExecutor(8) as pool:
        for result in pool.map(send, jobs):
            assert result["errors"] == []
            totals.update(created=result["created"], existing=result["existing"])
    return totals


def label_concurrently(queues: list, keys: list[str], records: list[dict]) -> Counter:
    """Each annotator labels every record (in an order of its own) through a replica of its own."""

    def annotate(k: int) -> Counter:
        seen: Counter = Counter()
        order = list(range(len(records)))
        random.Random(k).shuffle(order)
        for i in order:
            answer = queues[k % len(queues)].call(
                "POST",
                f"/api/v1/records/{records[i]['id']}/responses",
                key=keys[k],
                json={"label": LABELS[i % 2]},
            )
            assert answer.status_code in (200, 409), answer.text  # 409: settled by the others already
            seen[answer.json()["status"] if answer.status_code == 200 else "conflict"] += 1
        return seen

    totals: Counter = Counter()
    with ThreadPoolExecutor(len(keys)) as pool:
        for seen in pool.map(annotate, range(len(keys))):
            totals.update(seen)
    return totals


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_two_replicas_deliver_each_consensus_label_exactly_once(
    model_service_factory, start_queue, adult_test_rows
) -> None:
    model = model_service_factory(threads=2)  # two feedback posts at once, one from each replica
    replicas = [start_queue(GLASSBOX_QUEUE_FEEDBACK_URL=model.url, **SENDER) for _ in range(2)]
    records = adult_records(adult_test_rows[:150], "rep")

    # Intake: both replicas receive the same records, twice each, at once: each is created once.
    intake = send_everywhere(replicas, records, copies=2)
    assert intake == {"created": 150, "existing": 450}
    assert replicas[1].call("GET", "/api/v1/records", params={"limit": 1}).json()["total"] == 150

    # Labelling: four annotators, two on each replica; a record settles at two agreeing labels.
    assert replicas[0].call("PUT", "/api/v1/settings", json={"min_submitted": 2}).ok
    keys = [replicas[0].add_user(f"ann{k}", "annotator") for k in range(4)]
    outcomes = label_concurrently(replicas, keys, records)
    assert outcomes["completed"] == 150  # each record completed once, by whichever second label came first

    # Exactly once at the model: one feedback row per record, and its own counter agrees.
    log = wait_for(lambda: (found := feedback_log(model)) and sum(found.values()) >= 150 and found)
    assert set(log) == {r["request_id"] for r in records} and set(log.values()) == {1}
    assert (
        wait_for(lambda: model_feedback_total(model) >= 150, timeout=30)
        and model_feedback_total(model) == 150
    )
    # Nothing is left to send, so nothing more can arrive: the shared outbox has no pending row.
    for queue in replicas:
        assert queue_metric(queue, 'glassbox_queue_feedback_records{state="sent"}') == 150
        assert queue_metric(queue, 'glassbox_queue_feedback_records{state="pending"}') == 0
    sent_by = [queue_metric(q, 'glassbox_queue_feedback_attempts_total{outcome="sent"}') for q in replicas]
    # Both senders compete for every row; each row was sent by one of them, once (which one, and how the
    # 150 split, is the scheduler's: on a loaded machine one sender may win every claim).
    assert sum(sent_by) == 150, sent_by


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
def test_a_queue_with_two_uvicorn_workers(model_service_factory, start_queue, adult_test_rows) -> None:
    model = model_service_factory()
    queue = start_queue(GLASSBOX_QUEUE_FEEDBACK_URL=model.url, GLASSBOX_QUEUE_WORKERS="2", **SENDER)
    # uvicorn's supervisor and its two workers (each with its own app, pool and sender).
    wait_for(lambda: len(process_group_members(queue.process.pid)) >= 3, timeout=30)
    records = adult_records(adult_test_rows[200:280], "workers")

    assert send_everywhere([queue], records, copies=3) == {"created": 80, "existing": 160}
    keys = [queue.add_user(f"w{k}", "annotator") for k in range(3)]
    outcomes = label_concurrently([queue], keys, records)
    assert outcomes["completed"] == 80 and outcomes["conflict"] == 160

    log = wait_for(lambda: (found := feedback_log(model)) and sum(found.values()) >= 80 and found)
    assert set(log) == {r["request_id"] for r in records} and set(log.values()) == {1}
    assert (
        wait_for(lambda: model_feedback_total(model) >= 80, timeout=30) and model_feedback_total(model) == 80
    )
    assert queue_metric(queue, 'glassbox_queue_feedback_records{state="pending"}') == 0
