"""Explanations on demand from the real explainer microservice, and a usable record when it fails."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import QUEUE_FEATURES, start_explainer_service
from glassbox.stack.process import free_port


def explanations_served(metrics_url: str) -> float:
    """How many explanations the explainer computed (its latency histogram's count)."""
    total = 0.0
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "glassbox_explainer_latency_seconds_count":
                total += sample.value
    return total


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_missing_explanation_is_fetched_once_and_stored(
    model_service_factory, trained_artifacts, start_queue, queue_record, adult_test_rows, processes, tmp_path
) -> None:
    model = model_service_factory()
    explainer = start_explainer_service(trained_artifacts, tmp_path, f"{model.url}/api/v1.0/predictions")
    processes.append(explainer.process)
    queue = start_queue(GLASSBOX_QUEUE_EXPLAINER_URL=explainer.url)
    features = dict(zip(QUEUE_FEATURES, adult_test_rows[0].tolist(), strict=True))
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1, features=features)]})

    first = queue.call("GET", "/api/v1/records/req-1:0")
    assert first.status_code == 200, first.text
    explanation = first.json()["explanation"]
    assert explanation["anchor"] and 0 <= explanation["precision"] <= 1
    assert explanation["instance"]["Age"] == adult_test_rows[0][0]  # the explainer saw this record's features
    served = explanations_served(explainer.metrics_url)
    again = queue.call("GET", "/api/v1/records/req-1:0").json()
    assert again["explanation"] == explanation
    assert explanations_served(explainer.metrics_url) == served  # stored: not asked again


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_unreachable_explainer_leaves_the_record_usable(start_queue, queue_record) -> None:
    queue = start_queue(
        GLASSBOX_QUEUE_EXPLAINER_URL=f"http://127.0.0.1:{free_port()}", GLASSBOX_QUEUE_EXPLAINER_TIMEOUT="2"
    )
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1)]})
    answer = queue.call("GET", "/api/v1/records/req-1:0")
    assert answer.status_code == 200
    record = answer.json()
    assert record["explanation"] is None
    assert record["explanation_error"].startswith("no explanation yet: explainer at")
    assert queue.call("POST", "/api/v1/records/req-1:0/responses", json={"label": ">50K"}).json()["completed"]
