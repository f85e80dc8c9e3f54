"""Plain HTTP against the V2 model, every request and answer checked against KServe's OpenAPI document
of the Open Inference Protocol (``tests/data/kserve-0.20/rest_predict_v2.yaml``) with openapi-core."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.validation.request.exceptions import RequestValidationError

from conftest import REPO

from .support import MAX_ROWS, MODEL

pytestmark = pytest.mark.slow

SPEC = REPO / "tests/data/kserve-0.20/rest_predict_v2.yaml"
ROW = [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    document = yaml.safe_load(SPEC.read_text())
    # The document writes path templates as ``${NAME}``; OpenAPI's are ``{NAME}``.
    document["paths"] = {re.sub(r"\$\{(\w+)\}", r"{\1}", k): v for k, v in document["paths"].items()}
    return OpenAPI.from_dict(document)


@pytest.fixture(scope="module")
def http() -> requests.Session:
    return requests.Session()


def exchange(spec: OpenAPI, http: requests.Session, method: str, url: str, body=None) -> requests.Response:
    """Send a request the spec accepts; check the answer against the spec; return it."""
    prepared = requests.Request(method, url, json=body).prepare()
    spec.validate_request(RequestsOpenAPIRequest(prepared))
    answer = http.send(prepared, timeout=30)
    spec.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(answer))
    return answer


def test_health_metadata_and_infer_follow_the_spec(spec, http, v2_model, model_version, bundle):
    base, versioned = v2_model.url, f"{v2_model.url}/v2/models/{MODEL}/versions/{model_version}"
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert exchange(spec, http, "GET", base + path).status_code == 200
    assert exchange(spec, http, "GET", f"{versioned}/ready").status_code == 200
    server = exchange(spec, http, "GET", f"{base}/v2/")  # MLServer redirects to /v2: the answer is checked
    assert server.status_code == 200 and server.json()["name"] == "mlserver"
    metadata = exchange(spec, http, "GET", versioned).json()
    assert [t["name"] for t in metadata["inputs"]][:2] == ["Age", "Workclass"]
    assert "Private" in json.loads(metadata["inputs"][1]["parameters"]["categories"])

    body = {
        "id": "spec-1",
        "inputs": [{"name": "features", "shape": [1, 12], "datatype": "FP64", "data": ROW}],
    }
    answer = exchange(spec, http, "POST", f"{versioned}/infer", body)
    assert answer.status_code == 200
    result = answer.json()
    assert result["id"] == "spec-1" and result["model_version"] == model_version
    probabilities = next(o for o in result["outputs"] if o["name"] == "probabilities")
    assert probabilities["shape"] == [1, 2]
    np.testing.assert_allclose(probabilities["data"], bundle.predict_proba(np.array([ROW]))[0], atol=1e-12)


def named_inputs(**changes) -> list[dict]:
    """One row by feature name, categoricals as strings; ``changes`` replaces a feature's input."""
    values = {
        "Age": ("FP64", 39), "Workclass": ("BYTES", "State-gov"), "Education": ("BYTES", "Bachelors"),
        "Marital Status": ("BYTES", "Never-Married"), "Occupation": ("BYTES", "Admin"),
        "Relationship": ("BYTES", "Not-in-family"), "Race": ("BYTES", "White"), "Sex": ("BYTES", "Male"),
        "Capital Gain": ("FP64", 2174), "Capital Loss": ("FP64", 0), "Hours per week": ("FP64", 40),
        "Country": ("BYTES", "United-States"),
    }  # fmt: skip
    inputs = [{"name": k, "shape": [1], "datatype": t, "data": [v]} for k, (t, v) in values.items()]
    for i, tensor in enumerate(inputs):
        if tensor["name"] in changes:
            inputs[i] = changes[tensor["name"]]
    return [t for t in inputs if t is not None]


# Requests the spec accepts but the model refuses: each a 400 whose ``error`` names the problem.
REFUSED = {
    "no inputs": ([], "the request has no inputs"),
    "eleven values": (
        [{"name": "features", "shape": [1, 11], "datatype": "FP64", "data": ROW[:11]}],
        "rows have 11 values; the model expects 12",
    ),
    "shape and data disagree": (
        [{"name": "features", "shape": [2, 12], "datatype": "FP64", "data": ROW}],
        "shape [2, 12] needs 24 values, 'data' has 12",
    ),
    "unknown category": (
        named_inputs(Sex={"name": "Sex", "shape": [1], "datatype": "BYTES", "data": ["Martian"]}),
        "feature 'Sex': unknown category 'Martian'",
    ),
    "missing feature": (named_inputs(Country=None), "inputs lacks feature(s): Country"),
    "unknown feature": (
        [*named_inputs(), {"name": "Height", "shape": [1], "datatype": "FP64", "data": [180]}],
        "unknown feature name(s) 'Height'",
    ),
    "duplicate feature": (
        [*named_inputs(), {"name": "Age", "shape": [1], "datatype": "FP64", "data": [40]}],
        "feature name(s) sent twice in inputs: ['Age']",
    ),
    "text in a number": (
        named_inputs(Age={"name": "Age", "shape": [1], "datatype": "BYTES", "data": ["old"]}),
        "feature 'Age': expected a number, got text 'old'",
    ),
    "3-D tensor": (
        [{"name": "features", "shape": [1, 3, 4], "datatype": "FP64", "data": ROW}],
        "a single input must be [rows, 12]",
    ),
    "too many rows": (
        [{"name": "features", "shape": [MAX_ROWS + 1, 12], "datatype": "FP64", "data": ROW * (MAX_ROWS + 1)}],
        f"at most {MAX_ROWS} are accepted per call",
    ),
    "zero rows": ([{"name": "features", "shape": [0, 12], "datatype": "FP64", "data": []}], "has no rows"),
    "ragged nested data": (
        [{"name": "features", "shape": [2, 12], "datatype": "FP64", "data": [ROW, ROW[:5]]}],
        "shape [2, 12] needs 24 values, 'data' has 17",
    ),
    "feature as a matrix": (
        named_inputs(Age={"name": "Age", "shape": [1, 2], "datatype": "FP64", "data": [39, 40]}),
        "a feature's input must be [rows] or [rows, 1]",
    ),
    "category code out of range": (
        named_inputs(Sex={"name": "Sex", "shape": [1], "datatype": "INT64", "data": [2]}),
        "code 2 is not a category code",
    ),
}


@pytest.mark.parametrize("case", [k for k, (_, words) in REFUSED.items() if words])
def test_bad_inputs_are_400_naming_the_problem(spec, http, v2_model, model_version, case):
    inputs, words = REFUSED[case]
    url = f"{v2_model.url}/v2/models/{MODEL}/versions/{model_version}/infer"
    answer = exchange(spec, http, "POST", url, {"inputs": inputs})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"], answer.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": [{"name": "features", "shape": "1x12", "datatype": "FP64", "data": ROW}]}, "shape"),
        ({"inputs": [{"name": "features", "shape": [1, 12], "datatype": "FP64"}]}, "data"),
        ({"id": "no inputs key"}, "inputs"),
        ("[1, 2", None),  # not JSON
    ],
)
def test_bodies_the_spec_refuses_are_4xx(spec, http, v2_model, model_version, body, field):
    """Bodies outside the spec: openapi-core refuses the request, and so does the server, with a 4xx."""
    url = f"{v2_model.url}/v2/models/{MODEL}/versions/{model_version}/infer"
    data = body if isinstance(body, str) else json.dumps(body)
    prepared = requests.Request(
        "POST", url, data=data, headers={"Content-Type": "application/json"}
    ).prepare()
    with pytest.raises(RequestValidationError):
        spec.validate_request(RequestsOpenAPIRequest(prepared))
    answer = http.send(prepared, timeout=30)
    assert 400 <= answer.status_code < 500, answer.text
    if field:
        assert field in answer.text


def test_unknown_datatype_is_a_4xx_naming_it(spec, http, v2_model, model_version):
    """The spec takes any string as a datatype; MLServer's request model refuses one outside the V2 table
    with FastAPI's 422 (not the spec's 400: MLServer's, not Glassbox's, answer), naming the field."""
    url = f"{v2_model.url}/v2/models/{MODEL}/versions/{model_version}/infer"
    body = {"inputs": [{"name": "features", "shape": [1, 12], "datatype": "FP99", "data": ROW}]}
    prepared = requests.Request("POST", url, json=body).prepare()
    spec.validate_request(RequestsOpenAPIRequest(prepared))
    answer = http.send(prepared, timeout=30)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "inputs", 0, "datatype"]


JSON_SCALARS = st.one_of(
    st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)
)
FEATURES = ["Age", "Workclass", "Sex", "Capital Gain", "features", "Country", "x"]
TENSORS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(FEATURES),
        "shape": st.lists(st.integers(0, 13), max_size=3),
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "UINT8"]),
        "data": st.lists(st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=13)), max_size=26),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=st.lists(TENSORS, max_size=13))
def test_no_request_the_spec_accepts_gets_a_5xx(spec, http, v2_model, model_version, inputs):
    """Random spec-valid bodies: 200 or 400, each answer valid per the spec, never a 5xx."""
    url = f"{v2_model.url}/v2/models/{MODEL}/versions/{model_version}/infer"
    answer = exchange(spec, http, "POST", url, {"inputs": inputs})
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]
