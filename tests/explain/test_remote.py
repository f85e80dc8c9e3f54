"""The explainer as a real seldon-core-microservice calling a real LoanClassifier microservice."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from seldon_core.seldon_client import SeldonClient

from conftest import ExplainerService, start_explainer_service, start_model_service
from glassbox.contract.labels import argmax_like_sklearn
from glassbox.contract.schema import FeatureSchema
from glassbox.explain.core import DeterministicExplainer
from glassbox.explain.params import ExplainParams
from glassbox.stack.process import LOOPBACK, free_port

pytestmark = pytest.mark.slow
MAX_ROWS = 3
S2I_CONTEXT = Path(__file__).resolve().parents[2] / "explainers/loanclassifier-explainer"


@pytest.fixture(scope="module")
def model(trained_artifacts, tmp_path_factory):
    service = start_model_service(trained_artifacts, tmp_path_factory.mktemp("model"))
    yield service
    service.process.stop()


@pytest.fixture(scope="module")
def explainer(trained_artifacts, model, tmp_path_factory):
    service = start_explainer_service(
        trained_artifacts,
        tmp_path_factory.mktemp("explainer"),
        model_url=f"{model.url}/api/v1.0/predictions",
        env={"GLASSBOX_EXPLAINER_MAX_ROWS": str(MAX_ROWS)},
    )
    yield service
    service.process.stop()


@pytest.fixture(scope="module")
def bundle(trained_artifacts):
    from glassbox.pipeline.artifacts import load_bundle

    return load_bundle(trained_artifacts)


def explanations(reply: requests.Response) -> list[dict]:
    assert reply.status_code == 200, reply.text
    return reply.json()["jsonData"]["explanations"]


def in_process(bundle, row: np.ndarray, seed: int = 1) -> dict:
    """The same explanation with alibi in this process (its own sampling code) over the bundle's model."""
    manifest = bundle.manifest
    explainer = DeterministicExplainer(
        bundle.load_explainer(),
        lambda X: argmax_like_sklearn(bundle.predict_proba(X)),
        FeatureSchema.of(manifest.feature_names, manifest.category_map),
        list(manifest.class_names),
        manifest.artifact_sha256,
    )
    return explainer.explain(row, ExplainParams(), seed, speedups=False)


def metric_samples(service: ExplainerService) -> dict[str, float]:
    """``glassbox_explainer_*`` samples summed over Seldon's labels, keyed ``name`` or ``name{reason}``."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(requests.get(service.metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name.startswith("glassbox_explainer_"):
                key = sample.name + (f"{{{sample.labels['reason']}}}" if "reason" in sample.labels else "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def test_remote_explanations_equal_in_process_alibi(explainer, bundle, adult_test_rows):
    rows = adult_test_rows[:MAX_ROWS]
    names = bundle.manifest.feature_names
    remote = explanations(explainer.explain({"data": {"names": names, "ndarray": rows.tolist()}}))
    assert len(remote) == len(rows)
    for row, explained in zip(rows, remote, strict=True):
        local = json.loads(json.dumps(in_process(bundle, row, seed=1)))
        assert explained["seed"] == 1 and explained["model_version"] == bundle.manifest.artifact_sha256
        for key in ("anchor", "precision", "coverage", "instance", "prediction", "raw"):
            assert explained[key] == local[key], key
        assert explained["stats"]["model_rows"] == local["stats"]["model_rows"]
        assert 1 < explained["stats"]["model_calls"] <= local["stats"]["model_calls"]  # batched draws


def test_same_request_same_anchor_and_second_is_a_cache_hit(explainer, adult_test_rows):
    body = {"jsonData": {"instances": [adult_test_rows[1].tolist()], "seed": 11}}
    first = explanations(explainer.explain(body))[0]
    second = explanations(explainer.explain(body))[0]
    assert (first["cached"], second["cached"]) == (False, True)  # its speed: benchmarks/explain.py
    assert {k: v for k, v in first.items() if k != "cached"} == {
        k: v for k, v in second.items() if k != "cached"
    }


def test_explain_path_and_seldon_client(explainer, adult_test_rows):
    row = adult_test_rows[2]
    via_path = explanations(
        explainer.explain({"data": {"ndarray": [row.tolist()]}}, path="/api/v1.0/explain")
    )
    # SeldonClient pointed straight at the microservice ("seldon" gateway) posts to /api/v1.0/predictions.
    client = SeldonClient(
        gateway="seldon", gateway_endpoint=explainer.url.removeprefix("http://"), transport="rest"
    )
    predicted = client.predict(data=row.reshape(1, -1), payload_type="ndarray", client_return_type="dict")
    assert predicted.success, predicted.msg
    assert predicted.response["jsonData"]["names"] == via_path[0]["anchor"]
    assert predicted.response["jsonData"]["explanations"][0]["cached"]


def test_job_submit_then_poll(explainer, adult_test_rows):
    rows = adult_test_rows[3:5].tolist()
    submitted = explainer.explain(
        {"jsonData": {"instances": rows, "job": "submit", "params": {"threshold": 0.9}}}
    )
    assert submitted.status_code == 200, submitted.text
    job = submitted.json()["jsonData"]["job"]
    assert job["status"] in ("queued", "running") and "explanations" not in submitted.json()["jsonData"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        polled = requests.get(explainer.url + job["poll"], timeout=10)
        assert polled.status_code == 200, polled.text
        if polled.json()["job"]["status"] == "done":
            break
        time.sleep(0.2)
    result = polled.json()
    assert result["job"]["status"] == "done" and len(result["explanations"]) == 2
    assert all(e["params"]["threshold"] == 0.9 for e in result["explanations"])
    via_predict = explainer.explain({"jsonData": {"job_id": job["id"]}}).json()["jsonData"]
    assert via_predict["explanations"] == result["explanations"]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"data": {"ndarray": [[1, 2, 3]]}}, 400, "data.ndarray rows have 3 values; the model expects 12"),
        ({"jsonData": {"instances": [[0] * 12] * (MAX_ROWS + 1)}}, 400, f"at most {MAX_ROWS} are accepted"),
        ({"jsonData": {"instances": [[39, 99] + [0] * 10]}}, 400, "is not a category code"),
        ({"data": {"ndarray": [[0] * 12, [1]]}}, 400, "data.ndarray row 1 has 1 values"),
        ({"data": {"tensor": {"shape": {"x": 1}, "values": []}}}, 400, "data.tensor must be an object"),
        ({"data": {"ndarray": [[0] * 12]}, "meta": "x"}, 400, "meta must be an object, got str"),
        ({"jsonData": {"instances": [[39] + [0] * 11], "params": {"threshold": 7}}}, 400, "threshold"),
        ({"jsonData": {"instances": [[39] + [0] * 11], "colour": "red"}}, 400, "colour: Extra inputs"),
        ({"strData": "explain this"}, 400, "strData/binData are not explained"),
        ({"jsonData": {"job_id": "no-such-job"}}, 404, "no explanation job 'no-such-job'"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(explainer, payload, status, message):
    reply = explainer.explain(payload)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["status"]["info"]


def test_malformed_json_and_unknown_job_path(explainer):
    reply = requests.post(
        f"{explainer.url}/api/v1.0/predictions",
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400 and "JSON" in reply.json()["status"]["info"]
    reply = requests.get(f"{explainer.url}/api/v1.0/explain/jobs/unknown", timeout=10)
    assert reply.status_code == 404 and "unknown" in reply.json()["status"]["info"]


def test_metrics_on_the_seldon_metrics_port(explainer, adult_test_rows):
    body = {"jsonData": {"instances": [adult_test_rows[5].tolist()]}}
    explainer.explain(body)  # a miss
    explainer.explain({"data": {"ndarray": [[1, 2, 3]]}})  # a rejection, counted by its reason
    explainer.explain(body)  # a hit
    samples = metric_samples(explainer)
    assert samples["glassbox_explainer_latency_seconds_count"] >= 1
    assert (
        samples["glassbox_explainer_precision_count"] == samples["glassbox_explainer_latency_seconds_count"]
    )
    assert (
        samples["glassbox_explainer_cache_hits_total"] >= 1
        and samples["glassbox_explainer_cache_misses_total"] >= 1
    )
    calls, explained = (
        samples["glassbox_explainer_remote_calls_total"],
        samples["glassbox_explainer_explanations_total"],
    )
    assert calls / explained > 1 and samples["glassbox_explainer_remote_rows_total"] > calls
    assert samples["glassbox_explainer_failures_total{wrong_width}"] >= 1


def explainer_calling_port(port: int, artifacts, tmp_path, processes, **env: str) -> ExplainerService:
    """A fresh explainer whose model URL is ``port`` on loopback, stopped after the test.

    Started as the s2i image starts it: ``seldon-core-microservice LoanExplainer`` in the build
    context, so the class file is what Seldon imports.
    """
    model_url = f"http://{LOOPBACK}:{port}/api/v1.0/predictions"
    env = {f"GLASSBOX_EXPLAINER_{k.upper()}": v for k, v in env.items()}
    explainer = start_explainer_service(
        artifacts, tmp_path, model_url=model_url, env=env, interface="LoanExplainer", cwd=str(S2I_CONTEXT)
    )
    processes.append(explainer.process)
    return explainer


def test_starts_while_the_model_is_down_and_recovers(trained_artifacts, tmp_path, processes, adult_test_rows):
    model_port = free_port()
    explainer = explainer_calling_port(
        model_port, trained_artifacts, tmp_path, processes, response_format="strData"
    )
    body = {"data": {"ndarray": [adult_test_rows[0].tolist()]}}
    start = time.monotonic()
    reply = explainer.explain(body)
    assert time.monotonic() - start < 10
    assert reply.status_code == 503, reply.text
    expected = f"model at http://{LOOPBACK}:{model_port}/api/v1.0/predictions is unreachable"
    assert expected in reply.json()["status"]["info"]

    # The model comes up on that port: the same explainer now answers, in the classic demo's strData shape.
    model = start_model_service(trained_artifacts, tmp_path, http_port=model_port)
    processes.append(model.process)
    reply = explainer.explain(body)
    assert reply.status_code == 200, reply.text
    classic = json.loads(reply.json()["strData"])
    assert set(classic) == {"names", "precision", "coverage"} and classic["names"]


def test_a_silent_model_times_out_and_a_busy_explainer_refuses_at_once(
    trained_artifacts, tmp_path, processes, adult_test_rows
):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind((LOOPBACK, 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        explainer = explainer_calling_port(
            port, trained_artifacts, tmp_path, processes, read_timeout_s="2", max_pending="1"
        )
        row = adult_test_rows[0].tolist()
        start = time.monotonic()
        reply = explainer.explain({"data": {"ndarray": [row]}})
        elapsed = time.monotonic() - start
        assert reply.status_code == 503, reply.text
        assert "did not answer within the timeouts" in reply.json()["status"]["info"]
        assert elapsed < 6  # the 2 s read timeout, never a hang

        # One job waits on the silent model (2 s): the next request is refused now, not queued.
        submitted = explainer.explain({"jsonData": {"instances": [row], "job": "submit", "seed": 2}})
        assert submitted.status_code == 200, submitted.text
        busy = explainer.explain({"jsonData": {"instances": [row], "seed": 3}})
        assert busy.status_code == 503, busy.text
        assert "explainer busy: 1 explanations running or waiting" in busy.json()["status"]["info"]
