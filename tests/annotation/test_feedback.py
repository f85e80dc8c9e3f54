"""Reviewed predictions reach the real model microservice as Seldon feedback, once each."""

from __future__ import annotations

import sqlite3
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import QUEUE_FEATURES
from glassbox.annotation.feedback import feedback_payload
from glassbox.stack.process import free_port

pytestmark = pytest.mark.slow


def seldon_feedback_counts(metrics_url: str) -> tuple[float, float]:
    """(``seldon_api_model_feedback_total``, ``seldon_api_model_feedback_reward_total``) over all series."""
    totals = {"seldon_api_model_feedback_total": 0.0, "seldon_api_model_feedback_reward_total": 0.0}
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["seldon_api_model_feedback_total"], totals["seldon_api_model_feedback_reward_total"]


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout}s: last {value!r}")


def test_feedback_payload_is_seldons_shape(queue_record) -> None:
    record = {**queue_record(1), "final_label": ">50K"}
    payload = feedback_payload(record)
    assert payload["request"]["data"]["names"][0] == "Age"
    assert payload["response"]["data"] == {"names": ["<=50K", ">50K"], "ndarray": [[0.51, 0.49]]}
    assert payload["response"]["meta"] == {"puid": "req-1"}
    assert payload["truth"]["data"]["ndarray"] == [[0.0, 1.0]]
    assert payload["reward"] == 0  # the model said <=50K


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_completed_predictions_send_feedback_to_the_model_once(
    model_service_factory, start_queue, adult_test_rows
) -> None:
    model = model_service_factory()
    queue = start_queue(GLASSBOX_QUEUE_FEEDBACK_URL=model.url, GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS="0.5")
    answer = model.predict({"data": {"ndarray": adult_test_rows[:3].tolist()}})
    assert answer.status_code == 200, answer.text
    classes = answer.json()["data"]["names"]
    records = []
    for row, probabilities in enumerate(answer.json()["data"]["ndarray"]):
        best = max(probabilities)
        records.append(
            {
                "id": f"fb-test:{row}",
                "source": "prediction",
                "features": dict(zip(QUEUE_FEATURES, adult_test_rows[row].tolist(), strict=True)),
                "probabilities": dict(zip(classes, probabilities, strict=True)),
                "predicted_label": classes[probabilities.index(best)],
                "certainty": {
                    "max_probability": best,
                    "margin": abs(probabilities[0] - probabilities[1]),
                    "entropy": 0.5,
                },
                "model_name": "loanclassifier",
                "model_version": "test",
                "request_id": "fb-test",
            }
        )
    assert queue.call("POST", "/api/v1/records/bulk", json={"records": records}).json()["created"] == 3
    assert seldon_feedback_counts(model.metrics_url) == (0.0, 0.0)

    right = records[0]["predicted_label"]
    wrong = next(c for c in classes if c != records[1]["predicted_label"])
    for i, body in enumerate(
        [{"label": right}, {"label": wrong}, {"discard": True}]
    ):  # a discard has no truth
        done = queue.call("POST", f"/api/v1/records/fb-test:{i}/responses", json=body)
        assert done.status_code == 200 and done.json()["completed"], done.text

    # Both reached the model: its feedback log (the serving component's) holds one row per record.
    log = model.outbox_dir / "feedback.sqlite3"
    wait_for(lambda: log.exists() and feedback_rows(log) == 2)
    # Seldon counts only non-zero rewards in seldon_api_model_feedback_total (seldon-core 1.19,
    # SeldonMetrics.update_reward returns early on 0), so its ratio cannot show the wrong answer...
    wait_for(lambda: seldon_feedback_counts(model.metrics_url) == (1.0, 1.0))
    # ...which is why the queue reports reviewed accuracy itself.
    metrics = queue.call("GET", "/metrics").text
    assert 'glassbox_queue_reviewed_predictions{verdict="correct"} 1.0' in metrics
    assert 'glassbox_queue_reviewed_predictions{verdict="wrong"} 1.0' in metrics
    assert 'glassbox_queue_feedback_sent_total{reward="0"} 1.0' in metrics
    assert 'glassbox_queue_feedback_sent_total{reward="1"} 1.0' in metrics
    states = [queue.call("GET", f"/api/v1/records/fb-test:{i}").json() for i in range(3)]
    assert [bool(r["feedback_sent_at"]) for r in states] == [True, True, False]
    time.sleep(1.5)  # several more sweeps: nothing is sent twice
    assert feedback_rows(log) == 2
    again = [queue.call("GET", f"/api/v1/records/fb-test:{i}").json() for i in range(2)]
    assert [r["feedback_attempts"] for r in again] == [1, 1]


def feedback_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_unreachable_model_leaves_feedback_due_and_the_record_completed(
    start_queue, queue_record, database
) -> None:
    queue = start_queue(
        GLASSBOX_QUEUE_FEEDBACK_URL=f"http://127.0.0.1:{free_port()}",
        GLASSBOX_QUEUE_FEEDBACK_RETRIES="0",
        GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS="0.5",
    )
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1)]})
    done = queue.call("POST", "/api/v1/records/req-1:0/responses", json={"label": ">50K"})
    assert done.status_code == 200 and done.json()["status"] == "completed"
    from glassbox.annotation.store import open_store

    store = open_store(*database)
    try:

        def attempts() -> int:
            with store.transaction() as cur:
                row = cur.execute("SELECT feedback_attempts, feedback_error FROM records").fetchone()
            return row["feedback_attempts"] >= 2 and row

        row = wait_for(attempts)
        assert "Connection refused" in row["feedback_error"] or "Max retries" in row["feedback_error"]
        assert [r["id"] for r in store.feedback_due()] == ["req-1:0"]  # still due: the next sweep retries
    finally:
        store.close()
