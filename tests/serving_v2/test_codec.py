"""``glassbox.contract.v2``: property tests of the V2 tensor <-> rows codec (no server)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.contract.schema import FeatureSchema, RejectedInput
from glassbox.contract.v2 import (
    decode_inputs,
    decode_probabilities,
    describe_inputs,
    encode_rows,
    requested_outputs,
)

SCHEMA = FeatureSchema.of(
    ["Age", "Workclass", "Sex", "Hours"],
    {1: ["Private", "State-gov", "?"], 2: ["Female", "Male"]},
    ["no", "yes"],
)
NUMERIC = {"FP64": float, "FP32": float, "INT64": int, "INT32": int, "UINT16": int}


@st.composite
def rows(draw) -> np.ndarray:
    n = draw(st.integers(1, 6))
    age = draw(st.lists(st.integers(0, 120), min_size=n, max_size=n))
    work = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    sex = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    hours = draw(st.lists(st.integers(0, 99), min_size=n, max_size=n))
    return np.array([age, work, sex, hours], dtype=np.float64).T


@st.composite
def by_feature(draw, X: np.ndarray) -> list[dict]:
    """One input per feature in any order, [n] or [n, 1]; categoricals as names (BYTES: str or bytes)
    or as codes."""
    inputs = []
    for j, name in enumerate(SCHEMA.feature_names):
        column = X[:, j]
        shape = draw(st.sampled_from([[len(X)], [len(X), 1]]))
        if SCHEMA.is_categorical(j) and draw(st.booleans()):
            names = [SCHEMA.categories[j][int(v)] for v in column]
            if draw(st.booleans()):  # gRPC's bytes_contents
                names = [n.encode() for n in names]
            inputs.append({"name": name, "shape": shape, "datatype": "BYTES", "data": names})
        else:
            datatype = draw(st.sampled_from(sorted(NUMERIC)))
            values = [NUMERIC[datatype](v) for v in column]
            data = [[v] for v in values] if len(shape) == 2 and draw(st.booleans()) else values
            inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return draw(st.permutations(inputs))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), X=rows())
def test_rows_survive_every_encoding(data, X):
    """By feature (any order, shapes, datatypes, names or codes) and as one matrix (flat or nested)."""
    np.testing.assert_array_equal(decode_inputs(data.draw(by_feature(X)), SCHEMA, 10), X)
    matrix = encode_rows(X)
    assert matrix["shape"] == [len(X), SCHEMA.width]
    np.testing.assert_array_equal(decode_inputs([matrix], SCHEMA, 10), X)
    nested = {**matrix, "data": X.tolist(), "name": "anything"}
    np.testing.assert_array_equal(decode_inputs([nested], SCHEMA, 10), X)


class Wrapped:
    """An MLServer ``RequestInput`` look-alike: attributes, and ``data`` wrapping the list in ``.root``."""

    def __init__(self, tensor: dict):
        self.name, self.shape, self.datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        self.data = type("TensorData", (), {"root": tensor["data"]})()


@given(X=rows())
def test_objects_with_attributes_decode_like_dicts(X):
    np.testing.assert_array_equal(decode_inputs([Wrapped(encode_rows(X))], SCHEMA, 10), X)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from([*SCHEMA.feature_names, "features", ""]) | JSON,
        "shape": st.lists(st.integers(-1, 5), max_size=3) | JSON,
        "datatype": st.sampled_from(["FP64", "INT64", "BYTES", "BOOL", "FP99"]) | JSON,
        "data": st.lists(JSON, max_size=10) | JSON,
    }
)


@settings(max_examples=200, deadline=None)
@given(inputs=st.lists(TENSOR, max_size=5) | JSON)
def test_anything_decodes_or_is_refused_by_name(inputs):
    """Arbitrary inputs: a finite (n, width) matrix, or a RejectedInput (400) with a message; nothing else."""
    try:
        X = decode_inputs(inputs, SCHEMA, 10)
    except RejectedInput as exc:
        assert exc.status_code == 400 and exc.message and exc.reason
        return
    assert X.shape[1] == SCHEMA.width and 1 <= len(X) <= 10 and np.isfinite(X).all()


def test_refusals_name_the_problem():
    cases = {
        "too_many_rows": [{**encode_rows(np.zeros((11, 4))), "name": "m"}],
        "unknown_category": [
            {"name": "Age", "shape": [1], "datatype": "INT64", "data": [3]},
            {"name": "Workclass", "shape": [1], "datatype": "BYTES", "data": ["Pirate"]},
            {"name": "Sex", "shape": [1], "datatype": "BYTES", "data": ["Male"]},
            {"name": "Hours", "shape": [1], "datatype": "INT64", "data": [3]},
        ],
        "bad_datatype": [{"name": "m", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}],
        "non_finite": [{"name": "m", "shape": [1, 4], "datatype": "FP64", "data": [1, float("nan"), 0, 4]}],
    }
    for reason, inputs in cases.items():
        with pytest.raises(RejectedInput) as caught:
            decode_inputs(inputs, SCHEMA, 10)
        assert caught.value.reason == reason, caught.value.message
    with pytest.raises(RejectedInput, match=r"'Pirate'.*expected one of \['Private', 'State-gov', '\?'\]"):
        decode_inputs(cases["unknown_category"], SCHEMA, 10)


def test_metadata_and_answers():
    described = {t["name"]: t for t in describe_inputs(SCHEMA)}
    assert described["Sex"]["datatype"] == "BYTES"
    assert json.loads(described["Sex"]["parameters"]["categories"]) == ["Female", "Male"]
    assert described["Age"]["datatype"] == "FP64"
    outputs = [{"name": "label", "data": ["no"]}, {"name": "probabilities", "data": [[0.25, 0.75]]}]
    np.testing.assert_array_equal(decode_probabilities(outputs, 1, 2), [[0.25, 0.75]])
    with pytest.raises(ValueError, match="has 2 values, expected 2 x 2"):
        decode_probabilities(outputs, 2, 2)
    assert requested_outputs(None, ("probabilities", "label")) == ("probabilities", "label")
    assert requested_outputs([{"name": "label"}], ("probabilities", "label")) == ("label",)
    with pytest.raises(RejectedInput, match="unknown output"):
        requested_outputs([{"name": "x"}], ("label",))
