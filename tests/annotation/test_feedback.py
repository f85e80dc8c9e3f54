"""Reviewed predictions reach the real model microservice as Seldon feedback, once each, through the
claimed outbox: permanent errors go dead at once, transient ones back off, no row holds back another."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from glassbox.annotation.feedback import FeedbackSender, backoff_delay, feedback_payload
from glassbox.annotation.records import RecordIn
from glassbox.stack.process import free_port

from .feedback_support import adult_records, feedback_log, model_feedback_total, wait_for

pytestmark = pytest.mark.slow


def seldon_feedback_counts(metrics_url: str) -> tuple[float, float]:
    """(``seldon_api_model_feedback_total``, ``seldon_api_model_feedback_reward_total``) over all series."""
    totals = {"seldon_api_model_feedback_total": 0.0, "seldon_api_model_feedback_reward_total": 0.0}
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["seldon_api_model_feedback_total"], totals["seldon_api_model_feedback_reward_total"]


def test_feedback_payload_is_seldons_shape(queue_record) -> None:
    record = {**queue_record(1), "final_label": ">50K"}
    payload = feedback_payload(record)
    assert payload["request"]["data"]["names"][0] == "Age"
    assert payload["response"]["data"] == {"names": ["<=50K", ">50K"], "ndarray": [[0.51, 0.49]]}
    # the record id rides along: the model records a repeated delivery once (contract FEEDBACK_ID_TAG)
    assert payload["response"]["meta"] == {"puid": "req-1", "tags": {"glassbox-feedback-id": record["id"]}}
    assert payload["truth"]["data"]["ndarray"] == [[0.0, 1.0]]
    assert payload["reward"] == 0  # the model said <=50K


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [backoff_delay(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(10_000, 2.0, 30.0) == 30.0


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_completed_predictions_send_feedback_to_the_model_once(
    model_service_factory, start_queue, adult_test_rows
) -> None:
    model = model_service_factory()
    queue = start_queue(GLASSBOX_QUEUE_FEEDBACK_URL=model.url, GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS="0.5")
    answer = model.predict({"data": {"ndarray": adult_test_rows[:3].tolist()}})
    assert answer.status_code == 200, answer.text
    classes = answer.json()["data"]["names"]
    records = adult_records(adult_test_rows[:3], "fb-test")
    for record, probabilities in zip(records, answer.json()["data"]["ndarray"], strict=True):
        best = max(probabilities)
        record["probabilities"] = dict(zip(classes, probabilities, strict=True))
        record["predicted_label"] = classes[probabilities.index(best)]
        record["certainty"] = {
            "max_probability": best,
            "margin": abs(probabilities[0] - probabilities[1]),
            "entropy": 0.5,
        }
    assert queue.call("POST", "/api/v1/records/bulk", json={"records": records}).json()["created"] == 3
    assert seldon_feedback_counts(model.metrics_url) == (0.0, 0.0)

    right = records[0]["predicted_label"]
    wrong = next(c for c in classes if c != records[1]["predicted_label"])
    for i, body in enumerate(
        [{"label": right}, {"label": wrong}, {"discard": True}]
    ):  # a discard has no truth
        done = queue.call("POST", f"/api/v1/records/fb-test-{i}:0/responses", json=body)
        assert done.status_code == 200 and done.json()["completed"], done.text

    # Both reached the model: its feedback log (the serving component's) holds one row per record.
    assert wait_for(lambda: len(log := feedback_log(model)) >= 2 and log) == {"fb-test-0": 1, "fb-test-1": 1}
    # Seldon counts only non-zero rewards in seldon_api_model_feedback_total (seldon-core 1.19,
    # SeldonMetrics.update_reward returns early on 0), so its ratio cannot show the wrong answer...
    wait_for(lambda: seldon_feedback_counts(model.metrics_url) == (1.0, 1.0))
    # ...which is why the queue reports reviewed accuracy itself.
    metrics = queue.call("GET", "/metrics").text
    assert 'glassbox_queue_reviewed_predictions{verdict="correct"} 1.0' in metrics
    assert 'glassbox_queue_reviewed_predictions{verdict="wrong"} 1.0' in metrics
    assert 'glassbox_queue_feedback_sent_total{reward="0"} 1.0' in metrics
    assert 'glassbox_queue_feedback_sent_total{reward="1"} 1.0' in metrics
    # Nothing is left to send (so nothing can be sent twice): the outbox has no pending row.
    assert 'glassbox_queue_feedback_records{state="sent"} 2.0' in metrics
    assert 'glassbox_queue_feedback_records{state="pending"} 0.0' in metrics
    assert 'glassbox_queue_feedback_attempts_total{outcome="sent"} 2.0' in metrics
    states = [queue.call("GET", f"/api/v1/records/fb-test-{i}:0").json() for i in range(3)]
    assert [(r["feedback_state"], r["feedback_attempts"]) for r in states] == [
        ("sent", 1),
        ("sent", 1),
        (None, 0),
    ]
    assert all(r["feedback_sent_at"] for r in states[:2])


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
def test_a_hundred_refused_rows_never_delay_a_valid_one(
    store, model_service_factory, adult_test_rows
) -> None:
    """The issue's reproduction: 100 records the model answers 400, then a valid 101st."""
    model = model_service_factory()
    poison = adult_records(adult_test_rows[:100], "poison")
    for record in poison:
        record["features"]["Sex"] = 7.0  # no such category code: the model refuses the feedback (400)
    valid = adult_records(adult_test_rows[100:101], "valid")
    store.insert_records([RecordIn.model_validate(r) for r in poison + valid])
    for record in poison + valid:  # the valid one completes last: the oldest due rows are the refused ones
        store.add_response(record["id"], "ann", kind="label", label=">50K", note="", min_submitted=1)
    outcomes: list[str] = []
    sender = FeedbackSender(
        store, model.url, batch=50, on_outcome=lambda outcome, reward: outcomes.append(outcome)
    )

    assert sender.send_due() == 1  # one sweep: the valid row is delivered
    assert feedback_log(model) == {"valid-0": 1}
    assert outcomes.count("dead") == 100 and outcomes.count("sent") == 1 and len(outcomes) == 101
    assert store.feedback_counts() == {"pending": 0, "sent": 1, "dead": 100}
    dead, total = store.list_records(feedback_state="dead", limit=1000)
    assert total == 100 and {r["feedback_attempts"] for r in dead} == {1}  # one attempt each
    assert all("400" in r["feedback_error"] and "'Sex'" in r["feedback_error"] for r in dead)
    rejections = model.metric_samples()[
        'glassbox_model_input_rejections_total{reason="feedback_unknown_category"}'
    ]
    assert rejections == 100
    assert sender.send_due() == 0 and feedback_log(model) == {"valid-0": 1}  # the next sweep posts nothing


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_an_absent_model_is_retried_with_backoff_and_a_refusal_shows_as_dead(
    model_service_factory, start_queue, adult_test_rows, tmp_path
) -> None:
    port = free_port()  # the model starts here later
    queue = start_queue(
        GLASSBOX_QUEUE_FEEDBACK_URL=f"http://127.0.0.1:{port}",
        GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS="0.2",
        GLASSBOX_QUEUE_FEEDBACK_BACKOFF_SECONDS="0.5",
        GLASSBOX_QUEUE_FEEDBACK_BACKOFF_MAX_SECONDS="1",
        GLASSBOX_QUEUE_FEEDBACK_MAX_ATTEMPTS="1000",
    )
    records = adult_records(adult_test_rows[:2], "later")
    records[1]["features"]["Race"] = 99.0  # refused by the model once it is there
    assert queue.call("POST", "/api/v1/records/bulk", json={"records": records}).json()["created"] == 2
    for record in records:
        assert queue.call("POST", f"/api/v1/records/{record['id']}/responses", json={"label": ">50K"}).ok

    def retried() -> list[dict]:
        rows = [queue.call("GET", f"/api/v1/records/{r['id']}").json() for r in records]
        return rows if all(r["feedback_attempts"] >= 2 for r in rows) else []

    for row in wait_for(retried):  # transient: still pending, the error shown, the next attempt scheduled
        assert row["feedback_state"] == "pending" and "model unreachable" in row["feedback_error"]
        assert row["feedback_next_attempt_at"] > row["completed_at"]
    metrics = queue.call("GET", "/metrics").text
    assert 'glassbox_queue_feedback_records{state="pending"} 2.0' in metrics
    assert 'glassbox_queue_feedback_attempts_total{outcome="sent"} 0.0' in metrics

    model = model_service_factory(http_port=port, workdir=tmp_path / "model")
    assert wait_for(lambda: feedback_log(model)) == {"later-0": 1}
    dead = wait_for(
        lambda: queue.call("GET", "/api/v1/records", params={"feedback_state": "dead"}).json()["records"]
    )
    assert [r["id"] for r in dead] == ["later-1:0"]
    assert (
        dead[0]["feedback_error"].startswith("model answered 400") and "'Race'" in dead[0]["feedback_error"]
    )
    metrics = queue.call("GET", "/metrics").text
    assert 'glassbox_queue_feedback_records{state="dead"} 1.0' in metrics
    assert 'glassbox_queue_feedback_records{state="sent"} 1.0' in metrics
    assert 'glassbox_queue_feedback_attempts_total{outcome="dead"} 1.0' in metrics
    assert model_feedback_total(model) == 1
    bad = queue.call("GET", "/api/v1/records", params={"feedback_state": "lost"})
    assert bad.status_code == 400 and "feedback_state must be one of" in bad.json()["error"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_stopping_sender_hands_back_the_rest_of_its_claim(store, queue_record) -> None:
    store.insert_records([RecordIn.model_validate(queue_record(i)) for i in range(5)])
    for i in range(5):
        store.add_response(f"req-{i}:0", "ann", kind="label", label=">50K", note="", min_submitted=1)
    url = f"http://127.0.0.1:{free_port()}"
    sender = FeedbackSender(store, url, batch=5, concurrency=1, on_outcome=lambda *_: sender.stop())

    assert sender.send_due() == 0  # one post (refused connection), then the stop: four rows handed back
    rows = {r["id"]: r for r in store.list_records(feedback_state="pending")[0]}
    assert sorted(r["feedback_attempts"] for r in rows.values()) == [0, 0, 0, 0, 1]
    tried = next(r for r in rows.values() if r["feedback_attempts"] == 1)
    assert "model unreachable" in tried["feedback_error"]
    handed_back = store.claim_feedback(10, 60, 8)  # due at once for the other senders
    assert sorted(r["id"] for r in handed_back) == sorted(set(rows) - {tried["id"]})


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_outcome_the_database_refused_is_written_at_the_next_pass(store, queue_record) -> None:
    from glassbox.errors import UpstreamUnavailable

    store.insert_records([RecordIn.model_validate(queue_record(1))])
    store.add_response("req-1:0", "ann", kind="label", label=">50K", note="", min_submitted=1)
    outcomes: list[str] = []
    sender = FeedbackSender(
        store, f"http://127.0.0.1:{free_port()}", on_outcome=lambda o, r: outcomes.append(o)
    )
    finish = store.finish_feedback

    def database_away(*args, **kwargs):
        store.finish_feedback = finish  # away for this one call only
        raise UpstreamUnavailable("PostgreSQL unavailable: test")

    store.finish_feedback = database_away
    with pytest.raises(UpstreamUnavailable):
        sender.send_due()
    assert store.get_record("req-1:0")["feedback_error"] is None  # not written yet
    assert sender.send_due() == 0 and outcomes == ["retry"]  # written first; the row backs off, not re-posted
    row = store.get_record("req-1:0")
    assert row["feedback_attempts"] == 1 and "model unreachable" in row["feedback_error"]
    assert row["feedback_next_attempt_at"] > row["completed_at"]
