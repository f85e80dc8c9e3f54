"""Bulk intake through the real HTTP service, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests


def test_bulk_keeps_good_records_beside_bad_ones(start_queue, queue_record) -> None:
    queue = start_queue()
    bad_probabilities = queue_record(2, probabilities={"<=50K": 0.9, ">50K": 0.9})
    unknown_label = queue_record(3, predicted_label="rich")
    missing_source = {k: v for k, v in queue_record(4).items() if k != "source"}
    body = {
        "records": [
            queue_record(1),
            bad_probabilities,
            unknown_label,
            missing_source,
            "text",
            queue_record(5),
        ]
    }
    answer = queue.call("POST", "/api/v1/records/bulk", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["created"], result["existing"]) == (2, 0)
    errors = {e["index"]: e for e in result["errors"]}
    assert set(errors) == {1, 2, 3, 4}
    assert "sum to 1" in errors[1]["error"] and errors[1]["id"] == "req-2:0"
    assert "predicted_label 'rich'" in errors[2]["error"]
    assert errors[3]["error"].startswith("source:")
    assert "JSON object" in errors[4]["error"]
    listed = queue.call("GET", "/api/v1/records").json()
    assert sorted(r["id"] for r in listed["records"]) == ["req-1:0", "req-5:0"]


def test_bulk_refuses_whole_bodies_it_cannot_read(start_queue, queue_record) -> None:
    queue = start_queue(GLASSBOX_QUEUE_MAX_BULK="3")
    too_many = queue.call(
        "POST", "/api/v1/records/bulk", json={"records": [queue_record(i) for i in range(4)]}
    )
    assert too_many.status_code == 400 and "at most 3" in too_many.json()["error"]
    not_json = queue.call("POST", "/api/v1/records/bulk", data=b"{nope")
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    wrong_shape = queue.call("POST", "/api/v1/records/bulk", json=[queue_record(1)])
    assert wrong_shape.status_code == 400 and '{"records"' in wrong_shape.json()["error"]


def test_concurrent_duplicate_sends_create_each_record_once(start_queue, queue_record) -> None:
    queue = start_queue()
    batch = [queue_record(i) for i in range(200)]
    # A response on one record must survive every re-send.
    queue.call("POST", "/api/v1/records/bulk", json={"records": batch[:1]})
    annotator = queue.add_user("ann", "annotator")
    assert queue.call("PUT", "/api/v1/settings", json={"min_submitted": 2}).status_code == 200
    answered = queue.call("POST", "/api/v1/records/req-0:0/responses", key=annotator, json={"label": ">50K"})
    assert answered.status_code == 200, answered.text

    def send(_: int) -> dict:
        answer = requests.post(
            f"{queue.url}/api/v1/records/bulk",
            json={"records": batch},
            headers={"X-API-Key": queue.owner_key},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(8)))
    assert sum(r["created"] for r in results) == 199  # 200 ids, one sent before
    assert sum(r["existing"] for r in results) == 8 * 200 - 199
    assert queue.call("GET", "/api/v1/records?limit=1").json()["total"] == 200
    kept = queue.call("GET", "/api/v1/records/req-0:0").json()
    assert [(r["user_name"], r["label"]) for r in kept["responses"]] == [("ann", ">50K")]
    assert kept["status"] == "pending"
    metrics = queue.call("GET", "/metrics").text
    assert 'glassbox_queue_intake_records_total{outcome="created"} 200.0' in metrics
    assert 'glassbox_queue_records{source="prediction",status="pending"} 200.0' in metrics
