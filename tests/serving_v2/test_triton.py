"""The V2 model on MLServer, called with tritonclient (HTTP and gRPC), a client nobody here wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .support import MAX_ROWS, MODEL, triton

pytestmark = pytest.mark.slow

ROWS = np.array(
    [
        [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9],
        [52, 4, 1, 2, 5, 0, 4, 1, 0, 0, 60, 9],
        [28, 4, 3, 1, 2, 3, 2, 0, 0, 0, 40, 9],
    ],
    dtype=np.float64,
)


def by_feature(schema, rows: np.ndarray) -> list[dict]:
    """One input per feature: categoricals as their names (BYTES), numbers as INT64, shape [n] or [n, 1]."""
    inputs = []
    for j, name in enumerate(schema.feature_names):
        if schema.is_categorical(j):
            values = [schema.categories[j][int(v)] for v in rows[:, j]]
            inputs.append({"name": name, "shape": [len(rows)], "datatype": "BYTES", "data": values})
        else:
            inputs.append(
                {
                    "name": name,
                    "shape": [len(rows), 1],
                    "datatype": "INT64",
                    "data": rows[:, j].astype(int).tolist(),
                }
            )
    return inputs


def matrix(rows: np.ndarray, datatype: str = "FP64") -> list[dict]:
    return [{"name": "features", "shape": list(rows.shape), "datatype": datatype, "data": rows.tolist()}]


@pytest.fixture(scope="module")
def schema(bundle):
    from glassbox.contract.schema import FeatureSchema

    return FeatureSchema.from_manifest(bundle.manifest)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_health_and_metadata(v2_bin, v2_model, model_version, schema, transport):
    url = f"127.0.0.1:{v2_model.http if transport == 'http' else v2_model.grpc}"
    call = {"transport": transport, "url": url, "model": MODEL}
    live, ready, model_ready, versioned_ready, metadata, missing = triton(
        v2_bin,
        [
            {**call, "op": "live"},
            {**call, "op": "ready"},
            {**call, "op": "model_ready"},
            {**call, "op": "model_ready", "version": model_version},
            {**call, "op": "metadata"},
            {**call, "op": "model_ready", "model": "no-such-model"},
        ],
    )
    assert live["value"] is ready["value"] is model_ready["value"] is versioned_ready["value"] is True
    # HTTP: not ready; MLServer's own gRPC ModelReady answers an unknown model with an error naming it.
    assert missing.get("value") is False or "no-such-model with version  not found" in missing["message"]
    meta = metadata["value"]
    assert meta["name"] == MODEL and meta["versions"] == [model_version]
    inputs = {t["name"]: t for t in meta["inputs"]}
    assert list(inputs) == list(schema.feature_names)
    for j, name in enumerate(schema.feature_names):
        assert inputs[name]["datatype"] == ("BYTES" if schema.is_categorical(j) else "FP64")
    assert [t["name"] for t in meta["outputs"]] == ["probabilities", "label"]
    if transport == "http":  # gRPC's TensorMetadata has no parameters; REST carries the category names
        assert json.loads(inputs["Sex"]["parameters"]["categories"]) == list(schema.categories[7])
        assert json.loads(meta["parameters"]["class_names"]) == list(schema.class_names)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_infer_matches_the_bundle(v2_bin, v2_model, bundle, schema, transport):
    """By feature name (strings for categoricals) and as one [n, 12] tensor: the bundle's probabilities."""
    url = f"127.0.0.1:{v2_model.http if transport == 'http' else v2_model.grpc}"
    call = {"transport": transport, "url": url, "model": MODEL, "op": "infer"}
    named, whole, single, fp32 = triton(
        v2_bin,
        [
            {**call, "inputs": by_feature(schema, ROWS)},
            {**call, "inputs": matrix(ROWS)},
            {**call, "inputs": matrix(ROWS[:1])},
            {**call, "inputs": matrix(ROWS.astype(np.float32), "FP32")},
        ],
    )
    expected = bundle.predict_proba(ROWS)
    for answer in (named, whole, fp32):
        assert answer["ok"], answer
        np.testing.assert_allclose(answer["outputs"]["probabilities"], expected, rtol=0, atol=1e-12)
        labels = [schema.class_names[i] for i in expected.argmax(axis=1)]
        assert answer["outputs"]["label"] == labels
    np.testing.assert_allclose(single["outputs"]["probabilities"], expected[:1], atol=1e-12)


BAD = [
    # (inputs, status word the message must contain)
    (matrix(ROWS[:, :11]), "the model expects 12"),
    ([{"name": "Sex", "shape": [1], "datatype": "BYTES", "data": ["Male"]}], "lacks feature(s): Age"),
    ("unknown-category", "unknown category 'Martian'"),
    ("text-in-number", "expected a number, got text 'old'"),
    ("too-many", f"at most {MAX_ROWS} are accepted"),
    ("bad-code", "is not a category code"),
    ("three-d", "must be [rows, 12]"),
    ("mismatched-rows", "every feature's input needs one value per row"),
]


def bad_inputs(kind, schema) -> list[dict]:
    if not isinstance(kind, str):
        return kind
    inputs = by_feature(schema, ROWS[:1])
    if kind == "unknown-category":
        inputs[7] = {**inputs[7], "data": ["Martian"]}
    elif kind == "text-in-number":
        inputs[0] = {"name": "Age", "shape": [1], "datatype": "BYTES", "data": ["old"]}
    elif kind == "too-many":
        return matrix(np.repeat(ROWS[:1], MAX_ROWS + 1, axis=0))
    elif kind == "bad-code":
        bad = ROWS[:1].copy()
        bad[0, 7] = 5
        return matrix(bad)
    elif kind == "three-d":
        return [
            {"name": "features", "shape": [1, 1, 12], "datatype": "FP64", "data": ROWS[:1].ravel().tolist()}
        ]
    elif kind == "mismatched-rows":
        inputs[0] = {"name": "Age", "shape": [2], "datatype": "INT64", "data": [30, 40]}
    return inputs


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_bad_inputs_are_refused_with_a_message(v2_bin, v2_model, schema, transport):
    url = f"127.0.0.1:{v2_model.http if transport == 'http' else v2_model.grpc}"
    before = v2_model.metric_samples("glassbox_model_input_rejections_total")
    calls = [
        {
            "transport": transport,
            "url": url,
            "model": MODEL,
            "op": "infer",
            "inputs": bad_inputs(kind, schema),
        }
        for kind, _ in BAD
    ]
    results = triton(v2_bin, calls)
    for (kind, words), result in zip(BAD, results, strict=True):
        assert not result["ok"], (kind, result)
        assert result["status"] == ("400" if transport == "http" else "StatusCode.INVALID_ARGUMENT"), result
        assert words in result["message"], (kind, result["message"])
    after = v2_model.metric_samples("glassbox_model_input_rejections_total")
    assert sum(after.values()) - sum(before.values()) == len(BAD)  # each counted by its reason


def test_requested_outputs_only(v2_bin, v2_model, bundle):
    """V2's ``outputs``: only the outputs asked for (tritonclient's ``InferRequestedOutput``); an unknown
    one is a 400 naming it and the outputs there are."""
    import requests

    body = {"inputs": matrix(ROWS), "outputs": [{"name": "probabilities"}]}
    answer = requests.post(v2_model.infer_url, json=body, timeout=30).json()
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(answer["outputs"][0]["data"], bundle.predict_proba(ROWS).ravel(), atol=1e-12)
    refused = requests.post(v2_model.infer_url, json={**body, "outputs": [{"name": "logits"}]}, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "unknown output(s) 'logits' in 'outputs'; this model answers 'probabilities', 'label'"
    )


def test_user_rows_are_counted_explainer_rows_apart(v2_bin, v2_model, schema):
    """glassbox_model_* on MLServer's /metrics; the explainer's mark (a request parameter) keeps its rows
    apart."""
    before = v2_model.metric_samples("glassbox_model_")
    call = {"transport": "grpc", "url": f"127.0.0.1:{v2_model.grpc}", "model": MODEL, "op": "infer"}
    results = triton(
        v2_bin,
        [
            {**call, "inputs": matrix(ROWS)},
            {**call, "inputs": matrix(ROWS[:2]), "parameters": {"glassbox-traffic": "explainer"}},
        ],
    )
    assert all(r["ok"] for r in results)
    after = v2_model.metric_samples("glassbox_model_")

    def grew(prefix: str) -> float:
        return sum(v for k, v in after.items() if k.startswith(prefix)) - sum(
            v for k, v in before.items() if k.startswith(prefix)
        )

    assert grew("glassbox_model_predictions_total") == len(ROWS)
    assert grew("glassbox_model_certainty_count") == len(ROWS)
    assert grew("glassbox_model_explainer_rows_total") == 2
