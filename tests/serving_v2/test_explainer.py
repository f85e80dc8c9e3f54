"""The explainer on MLServer (V2) explaining with the model on MLServer (V2): anchors end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from .support import EXPLAINER, MAX_ROWS, V2Server, start_v2_server, triton

pytestmark = pytest.mark.slow

ROW = [52, 4, 1, 2, 5, 0, 4, 1, 0, 0, 60, 9]
MATRIX = [{"name": "features", "shape": [1, 12], "datatype": "FP64", "data": ROW}]


@pytest.fixture(scope="module")
def v2_explainer(v2_bin, v2_model, trained_artifacts, tmp_path_factory) -> Iterator[V2Server]:
    server = start_v2_server(
        v2_bin,
        "explainer",
        trained_artifacts,
        tmp_path_factory.mktemp("v2-explainer"),
        env={"GLASSBOX_EXPLAINER_MAX_ROWS_PER_CALL": str(MAX_ROWS)},  # the shared model takes no more
        extra_args=("--model-url", v2_model.infer_url),
    )
    yield server
    server.process.stop()


def explanation(result: dict) -> dict:
    assert result["ok"], result
    (text,) = result["outputs"]["explanation"]
    return json.loads(text)


def test_anchors_over_v2_match_the_in_process_explainer(v2_bin, v2_model, v2_explainer, bundle):
    from glassbox.contract.labels import argmax_like_sklearn
    from glassbox.contract.schema import FeatureSchema
    from glassbox.explain.core import DeterministicExplainer
    from glassbox.explain.params import ExplainParams

    model_before = v2_model.metric_samples("glassbox_model_")
    http = {"transport": "http", "url": f"127.0.0.1:{v2_explainer.http}", "model": EXPLAINER, "op": "infer"}
    grpc = {**http, "transport": "grpc", "url": f"127.0.0.1:{v2_explainer.grpc}"}
    first, again, over_grpc = triton(
        v2_bin,
        [
            {**http, "inputs": MATRIX, "parameters": {"explain_parameters": {"threshold": 0.9}, "seed": 3}},
            {**http, "inputs": MATRIX, "parameters": {"explain_parameters": {"threshold": 0.9}, "seed": 3}},
            # gRPC parameters hold scalars only: an object goes as a JSON string
            {**grpc, "inputs": MATRIX, "parameters": {"explain_parameters": '{"threshold": 0.9}', "seed": 3}},
        ],
    )
    body, cached, via_grpc = explanation(first), explanation(again), explanation(over_grpc)
    record = body["explanations"][0]
    assert record["anchor"] and record["precision"] >= 0.5 and not record["cached"]
    assert record["seed"] == 3 and record["params"]["threshold"] == 0.9
    assert cached["explanations"][0]["cached"] and via_grpc["explanations"][0]["cached"]
    assert cached["explanations"][0]["anchor"] == via_grpc["explanations"][0]["anchor"] == record["anchor"]

    # The same anchor as the explainer fitted beside the model, run in this process on the bundle.
    local = DeterministicExplainer(
        bundle.load_explainer(bind=False),
        lambda X: argmax_like_sklearn(bundle.predict_proba(X)),
        FeatureSchema.from_manifest(bundle.manifest),
        list(bundle.manifest.class_names),
        bundle.manifest.artifact_sha256,
    )
    expected = local.explain(np.array(ROW, dtype=float), ExplainParams(threshold=0.9), 3)
    assert record["anchor"] == expected["anchor"] and record["precision"] == expected["precision"]

    # The model counted the explainer's calls as explainer traffic (a V2 request parameter), not as users'.
    model_after = v2_model.metric_samples("glassbox_model_")
    rows = (
        model_after["glassbox_model_explainer_rows_total"]
        - model_before["glassbox_model_explainer_rows_total"]
    )
    assert rows == record["stats"]["model_rows"] > 0
    users = [k for k in model_after if k.startswith("glassbox_model_predictions_total")]
    assert sum(model_after[k] for k in users) == sum(model_before.get(k, 0) for k in users)
    explainer_metrics = v2_explainer.metric_samples("glassbox_explainer_")
    assert explainer_metrics["glassbox_explainer_explanations_total"] == 1
    assert explainer_metrics["glassbox_explainer_cache_hits_total"] == 2


def test_bad_requests_are_400_naming_the_problem(v2_explainer):
    url = f"{v2_explainer.url}/v2/models/{EXPLAINER}/infer"
    cases = [
        ({"inputs": MATRIX, "parameters": {"explain_parameters": {"thresh": 0.9}}}, "thresh"),
        ({"inputs": MATRIX, "parameters": {"explain_parameters": "{not json"}}, "not valid JSON"),
        ({"inputs": MATRIX, "parameters": {"colour": "red"}}, "colour"),
        (
            {"inputs": [{**MATRIX[0], "shape": [1, 11], "data": ROW[:11]}]},
            "rows have 11 values; the model expects 12",
        ),
        ({"inputs": [], "parameters": {"job_id": "no-such-job"}}, "no-such-job"),
    ]
    for body, words in cases:
        answer = requests.post(url, json=body, timeout=30)
        assert 400 <= answer.status_code < 500, (body, answer.text)
        assert words in answer.json()["error"], (body, answer.json())


def test_metadata_describes_inputs_and_the_explanation(v2_explainer, model_version):
    meta = requests.get(f"{v2_explainer.url}/v2/models/{EXPLAINER}", timeout=10).json()
    assert meta["versions"] == [model_version]
    assert [t["name"] for t in meta["inputs"]][:2] == ["Age", "Workclass"]
    assert meta["outputs"] == [
        {"name": "explanation", "datatype": "BYTES", "shape": [1], "parameters": {"content_type": "str"}}
    ]
    assert meta["parameters"]["model_protocol"] == "v2"


def test_attributions_over_v2_add_up_to_the_served_probability(v2_bin, v2_explainer, bundle):
    """The explainer's other methods come through the same parameters (here TreeSHAP attributions, which
    ask the V2 model for the row and check its artifact first)."""
    call = {"transport": "http", "url": f"127.0.0.1:{v2_explainer.http}", "model": EXPLAINER, "op": "infer"}
    (result,) = triton(v2_bin, [{**call, "inputs": MATRIX, "parameters": {"method": "attributions"}}])
    record = explanation(result)["explanations"][0]
    attributions = record["attributions"]
    classes = list(bundle.manifest.class_names)
    expected = bundle.predict_proba(np.array([ROW], dtype=float))[0][classes.index(attributions["class"])]
    assert attributions["probability"] == pytest.approx(expected, abs=1e-9)
    total = attributions["base_value"] + sum(attributions["values"].values())
    assert total == pytest.approx(expected, abs=1e-6)
    assert set(attributions["values"]) == set(bundle.manifest.feature_names)


def test_counterfactuals_over_v2_are_verified_against_the_v2_model(v2_bin, v2_explainer):
    """DiCE (installed --no-deps in .venv-v2 as in the explainer image) over the V2 explainer; every
    counterfactual is re-checked with the model it calls over V2."""
    call = {"transport": "http", "url": f"127.0.0.1:{v2_explainer.http}", "model": EXPLAINER, "op": "infer"}
    parameters = {"method": "counterfactuals", "counterfactuals": json.dumps({"k": 2})}
    (result,) = triton(v2_bin, [{**call, "inputs": MATRIX, "parameters": parameters}])
    found = explanation(result)["explanations"][0]["counterfactuals"]
    assert found["found"], found
    assert found["items"] and all(item["verified"] for item in found["items"])
    assert all(
        change["feature"] not in ("Race", "Sex", "Country") for i in found["items"] for change in i["changes"]
    )
