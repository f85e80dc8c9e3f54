"""Request shapes the explainer accepts, and a clear 400 naming the problem for everything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.contract.schema import FeatureSchema
from glassbox.errors import InvalidInput
from glassbox.explain.params import ExplainParams
from glassbox.explain.wire import parse_payload, to_seldon

SCHEMA = FeatureSchema.of(["Age", "Colour", "Hours"], {"1": ["red", "green", "blue"]}, ["no", "yes"])
MAX_ROWS = 5


def parse(payload):
    return parse_payload(payload, SCHEMA, MAX_ROWS)


def test_ndarray_with_options_in_meta_tags():
    meta = {"tags": {"explain": {"params": {"threshold": 0.9}, "seed": 5, "job": "submit"}}}
    request = parse({"data": {"names": ["Age", "Colour", "Hours"], "ndarray": [[55, 1, 40]]}, "meta": meta})
    assert request.rows.tolist() == [[55.0, 1.0, 40.0]]
    assert request.params == ExplainParams(threshold=0.9)
    assert (request.seed, request.submit, request.job_id) == (5, True, None)


def test_names_in_another_order_are_reordered_like_the_model_does():
    request = parse({"data": {"names": ["Hours", "Colour", "Age"], "ndarray": [[40, "green", 55]]}})
    assert request.rows.tolist() == [[55.0, 1.0, 40.0]]


def test_json_data_rows_as_mappings_with_category_names():
    body = {"instances": [{"Age": 55, "Colour": "green", "Hours": 40}], "seed": 2}
    request = parse({"jsonData": body})
    assert request.rows.tolist() == [[55.0, 1.0, 40.0]]
    assert request.params == ExplainParams() and request.seed == 2 and not request.submit


def test_json_data_records_without_options_are_a_model_request():
    request = parse({"jsonData": {"Age": 55, "Colour": "green", "Hours": 40}})
    assert request.rows.tolist() == [[55.0, 1.0, 40.0]]


def test_json_data_single_flat_row_and_poll():
    assert parse({"jsonData": {"instances": [55, 1, 40]}}).rows.shape == (1, 3)
    assert parse({"jsonData": {"job_id": "abc"}}).job_id == "abc"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"jsonData": {"instances": [[1, 2]]}}, "jsonData.instances rows have 2 values; the model expects 3"),
        ({"jsonData": {"instances": [[55, 7, 40]]}}, "feature 'Colour': code 7 is not a category code"),
        ({"jsonData": {"instances": [[55, 1.5, 40]]}}, "feature 'Colour': code 1.5 is not a category code"),
        (
            {"jsonData": {"instances": [{"Age": 55, "Colour": "purple", "Hours": 1}]}},
            "feature 'Colour': unknown category 'purple'",
        ),
        (
            {"jsonData": {"instances": [{"Age": 55, "Hours": 1, "Shoe": 3}]}},
            "jsonData.instances record 0: unknown feature(s) 'Shoe'",
        ),
        ({"jsonData": {"instances": [[55, 1, "forty"]]}}, "feature 'Hours': expected a number, got text"),
        ({"data": {"ndarray": [[float("nan"), 1, 40]]}}, "feature 'Age': nan is not allowed"),
        ({"jsonData": {"instances": []}}, "the request has no rows"),
        ({"jsonData": {"instances": [[55, 1, 40]] * 6}}, "the request has 6 rows; at most 5"),
        ({"jsonData": {"instances": [[55, 1, 40]], "rows": 1}}, "bad jsonData: rows: Extra inputs"),
        (
            {"jsonData": {"instances": [[55, 1, 40]], "params": {"threshold": 2}}},
            "threshold: Input should be less than or equal to 1",
        ),
        (
            {"jsonData": {"instances": [[55, 1, 40]], "params": {"treshold": 0.9}}},
            "treshold: Extra inputs are not permitted",
        ),
        ({"jsonData": {"instances": [[55, 1, 40]], "job": "later"}}, "bad jsonData: job: Input should be"),
        ({"jsonData": {"instances": [[55, 1, 40]], "job_id": "x"}}, "either jsonData.job_id"),
        ({"jsonData": {"seed": 1}}, "needs 'instances'"),
        ({"strData": "some text"}, "strData/binData are not explained"),
        (
            {"data": {"names": ["Hours", "Colour"], "ndarray": [[55, 1, 40]]}},
            "data.names lacks feature(s): Age",
        ),
        (
            {"data": {"names": [{"a": 1}], "ndarray": [[55, 1, 40]]}},
            "data.names must be a list of feature names",
        ),
        (
            {"data": {"ndarray": [[55, 1, 40]]}, "meta": {"tags": {"explain": {"seed": "x"}}}},
            "meta.tags.explain",
        ),
        ({"data": {"ndarray": [[55, 1, 40]]}, "meta": [1]}, "meta must be an object, got list"),
        ({"data": {"ndarray": [[55, 1, 40]]}, "meta": {"tags": 3}}, "meta.tags must be an object"),
        ({"data": {"ndarray": [[55, 1, 40], [1]]}}, "data.ndarray row 1 has 1 values"),
        ({"data": {"tensor": {"shape": {"a": 1}, "values": []}}}, "data.tensor must be an object with"),
        ({"data": {"ndarray": []}}, "the request has no rows"),
        (7, "the request body must be a JSON object, got int"),
    ],
)
def test_bad_requests_name_the_problem(payload, message):
    with pytest.raises(InvalidInput) as caught:
        parse(payload)
    assert caught.value.status_code == 400
    assert message in caught.value.message


def test_the_same_bad_body_gets_the_models_message():
    """One contract: the explainer's 400 for a model-shaped body is the model's own message."""
    from glassbox.contract.payload import parse_request

    body = {"data": {"names": ["text"], "ndarray": [[1, 2, 3]]}}
    with pytest.raises(InvalidInput) as from_model:
        parse_request(body, SCHEMA, MAX_ROWS)
    with pytest.raises(InvalidInput) as from_explainer:
        parse(body)
    assert from_explainer.value.message == from_model.value.message


def test_str_data_is_the_classic_demo_shape():
    body = {"explanations": [{}], "names": ["Age > 40"], "precision": 0.97, "coverage": 0.1}
    assert json.loads(to_seldon(body, "strData")["strData"]) == {
        "names": ["Age > 40"],
        "precision": 0.97,
        "coverage": 0.1,
    }
    assert to_seldon(body, "jsonData") == {"jsonData": body}
    handle = {"job": {"id": "j", "status": "queued"}}
    assert to_seldon(handle, "strData") == {"jsonData": handle}  # a job handle has no strData form


# --- methods (issue #13) ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)
method_names = st.sampled_from(["anchors", "attributions", "counterfactuals", "lime", ""])
option_values = st.fixed_dictionaries(
    {},
    optional={
        "method": method_names | st.lists(method_names, max_size=4) | json_values,
        "attributions": st.fixed_dictionaries(
            {}, optional={"classes": st.sampled_from(["all", "predicted", "x"])}
        )
        | json_values,
        "reason_codes": st.fixed_dictionaries({}, optional={"top_k": st.integers(-3, 20)}) | json_values,
        "counterfactuals": st.fixed_dictionaries(
            {},
            optional={
                "k": st.integers(-2, 15),
                "method": st.sampled_from(["random", "genetic", "kdtree"]),
                "sample_size": st.integers(0, 20_000),
                "max_iterations": st.integers(0, 2000),
            },
        )
        | json_values,
    },
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(options=option_values, where=st.sampled_from(["meta", "jsonData"]))
def test_method_options_parse_or_are_400_naming_the_option(options, where):
    if where == "meta":
        payload = {"data": {"ndarray": [[55, 1, 40]]}, "meta": {"tags": {"explain": options}}}
    else:
        payload = {"jsonData": {"instances": [[55, 1, 40]], **options}}
    try:
        request = parse(payload)
    except InvalidInput as exc:
        assert exc.status_code == 400
        assert any(name in exc.message for name in options), exc.message
        return
    methods = request.methods
    assert methods.method and set(methods.method) <= {"anchors", "attributions", "counterfactuals"}
    assert 1 <= methods.counterfactuals.k <= 10 and 1 <= methods.reason_codes.top_k <= 12
    assert methods.key() == type(methods).model_validate(methods.model_dump(mode="json")).key()  # job JSON


def test_methods_default_to_anchors_and_key_the_cache_only_with_their_options():
    plain = parse({"data": {"ndarray": [[55, 1, 40]]}})
    assert plain.methods.anchors_only and plain.methods.key() == (("anchors",),)
    both = parse({"jsonData": {"instances": [[55, 1, 40]], "method": ["attributions", "anchors"]}})
    assert both.methods.method == ("anchors", "attributions")  # canonical order: one cache entry
    other_k = parse(
        {"jsonData": {"instances": [[55, 1, 40]], "method": "attributions", "counterfactuals": {"k": 5}}}
    )
    assert (
        other_k.methods.key()
        == parse({"jsonData": {"instances": [[55, 1, 40]], "method": "attributions"}}).methods.key()
    )  # counterfactual options do not matter without counterfactuals
