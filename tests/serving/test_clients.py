"""SeldonClient against the real microservice: REST and gRPC, predictions and feedback."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from seldon_core.seldon_client import SeldonClient
from seldon_core.utils import seldon_message_to_json


@pytest.fixture(scope="module")
def rows(adult_test_rows) -> np.ndarray:
    return adult_test_rows[:5]


def client(model, transport: str) -> SeldonClient:
    endpoint = model.grpc_endpoint if transport == "grpc" else model.url.removeprefix("http://")
    return SeldonClient(microservice_endpoint=endpoint, transport=transport)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_predict_with_names(model, bundle, rows, transport):
    names = list(bundle.manifest.feature_names)
    result = client(model, transport).microservice(
        method="predict", data=rows[:, ::-1], names=names[::-1], payload_type="ndarray"
    )
    assert result.success, result.msg
    response = seldon_message_to_json(result.response)
    assert response["data"]["names"] == list(bundle.manifest.class_names)
    np.testing.assert_allclose(response["data"]["ndarray"], bundle.sklearn_predict_proba(rows), atol=1e-5)
    assert response["meta"]["tags"]["model_version"] == bundle.manifest.version


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_predict_tensor(model, bundle, rows, transport):
    result = client(model, transport).microservice(method="predict", data=rows, payload_type="tensor")
    assert result.success, result.msg
    probabilities = np.asarray(seldon_message_to_json(result.response)["data"]["ndarray"])
    np.testing.assert_allclose(probabilities, bundle.predict_proba(rows), atol=1e-9)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_bad_input_is_refused_with_its_reason(model, transport):
    result = client(model, transport).microservice(
        method="predict", data=np.ones((2, 3)), payload_type="ndarray"
    )
    assert not result.success
    if transport == "rest":
        assert "BAD REQUEST" in result.msg.upper()
        assert "3 values" in seldon_message_to_json(result.response)["status"]["info"]
    else:  # gRPC carries the exception's message; there is no HTTP status to set
        assert "3 values" in result.msg


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_feedback_is_recorded(model, rows, transport):
    sc = client(model, transport)
    prediction = sc.microservice(method="predict", data=rows[:2], payload_type="ndarray")
    assert prediction.success, prediction.msg
    feedback = sc.microservice_feedback(prediction.request, prediction.response, reward=1.0)
    assert feedback.success, feedback.msg
    puid = seldon_message_to_json(prediction.response)["meta"]["puid"]
    with sqlite3.connect(model.outbox_dir / "feedback.sqlite3") as db:
        rows_logged = db.execute(
            "SELECT reward, truth, predicted FROM feedback WHERE request_id = ?", (puid,)
        ).fetchall()
    assert len(rows_logged) == 2
    assert all(reward == 1.0 and truth is None and predicted for reward, truth, predicted in rows_logged)


def test_feedback_with_truth_over_rest(model, bundle, rows):
    import requests

    classes = list(bundle.manifest.class_names)
    request = {"data": {"names": list(bundle.manifest.feature_names), "ndarray": rows[:1].tolist()}}
    response = model.predict(request).json()
    wrong_before = model.metric_samples().get('glassbox_model_feedback_total{reward="0"}', 0.0)
    body = {
        "request": request,
        "response": response,
        "truth": {"data": {"names": classes, "ndarray": [[0, 1]]}},
    }
    answer = requests.post(f"{model.url}/api/v1.0/feedback", json={**body, "reward": 0}, timeout=10)
    assert answer.status_code == 200, answer.text
    with sqlite3.connect(model.outbox_dir / "feedback.sqlite3") as db:
        truth = db.execute(
            "SELECT truth FROM feedback WHERE request_id = ?", (response["meta"]["puid"],)
        ).fetchone()
    assert truth == (classes[1],)
    # Seldon's own counters skip reward 0; the component's counter does not (live accuracy needs it).
    assert model.metric_samples()['glassbox_model_feedback_total{reward="0"}'] == wrong_before + 1
    bad = {**body, "truth": {"data": {"ndarray": [[0, 1, 0]]}}}
    answer = requests.post(f"{model.url}/api/v1.0/feedback", json=bad, timeout=10)
    assert answer.status_code == 400 and "one-hot" in answer.json()["status"]["info"]


def test_feedback_with_an_id_is_recorded_once(model, bundle, rows):
    """The queue's outbox delivers at least once; a repeated feedback id is answered but not recorded
    or counted again."""
    import requests

    from glassbox.contract.seldon import FEEDBACK_ID_TAG

    classes = list(bundle.manifest.class_names)
    request = {"data": {"names": list(bundle.manifest.feature_names), "ndarray": rows[2:4].tolist()}}
    response = model.predict(request).json()
    response["meta"]["tags"] = {FEEDBACK_ID_TAG: "record-42"}
    body = {"request": request, "response": response, "reward": 1,
            "truth": {"data": {"names": classes, "ndarray": [[1, 0], [0, 1]]}}}  # fmt: skip
    before = model.metric_samples().get('glassbox_model_feedback_total{reward="1"}', 0.0)
    recorded = []
    for _ in range(3):
        answer = requests.post(f"{model.url}/api/v1.0/feedback", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        recorded.append(answer.json()["data"]["ndarray"][0])
    assert recorded == [2, 0, 0]
    with sqlite3.connect(model.outbox_dir / "feedback.sqlite3") as db:
        stored = db.execute("SELECT COUNT(*) FROM feedback WHERE feedback_id = 'record-42'").fetchone()
    assert stored == (2,)
    assert model.metric_samples()['glassbox_model_feedback_total{reward="1"}'] == before + 2
    body["response"]["meta"]["tags"] = {FEEDBACK_ID_TAG: 7}
    answer = requests.post(f"{model.url}/api/v1.0/feedback", json=body, timeout=10)
    assert answer.status_code == 400 and FEEDBACK_ID_TAG in answer.json()["status"]["info"]
