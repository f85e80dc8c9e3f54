"""The queue's Prometheus metrics after intake and review, read from the real service."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_depth_intake_review_and_time_to_label(start_queue, queue_record) -> None:
    queue = start_queue()
    before = samples(queue.call("GET", "/metrics").text)
    assert before['glassbox_queue_records{source="training-audit",status="completed"}'] == 0
    assert before['glassbox_queue_intake_records_total{outcome="invalid"}'] == 0
    audit = queue_record(9, id="audit:v:9", source="training-audit")
    body = {"records": [queue_record(1), queue_record(2), audit, queue_record(3, source="elsewhere")]}
    queue.call("POST", "/api/v1/records/bulk", json=body)
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1)]})
    queue.call("POST", "/api/v1/records/req-1:0/responses", json={"label": ">50K"})
    queue.call("POST", "/api/v1/records/req-2:0/responses", json={"discard": True})
    after = samples(queue.call("GET", "/metrics").text)
    assert after['glassbox_queue_intake_records_total{outcome="created"}'] == 3
    assert after['glassbox_queue_intake_records_total{outcome="existing"}'] == 1
    assert after['glassbox_queue_intake_records_total{outcome="invalid"}'] == 1
    assert after['glassbox_queue_records{source="prediction",status="completed"}'] == 1
    assert after['glassbox_queue_records{source="prediction",status="discarded"}'] == 1
    assert after['glassbox_queue_records{source="training-audit",status="pending"}'] == 1
    assert after['glassbox_queue_responses_total{kind="label"}'] == 1
    assert after['glassbox_queue_responses_total{kind="discard"}'] == 1
    assert after["glassbox_queue_time_to_label_seconds_count"] == 2
