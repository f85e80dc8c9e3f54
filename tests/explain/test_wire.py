"""Request shapes the explainer accepts, and a clear 400 naming the problem for everything else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glassbox.errors import InvalidInput
from glassbox.explain.instances import FeatureSchema
from glassbox.explain.params import ExplainParams
from glassbox.explain.wire import parse_request, to_seldon

SCHEMA = FeatureSchema(["Age", "Colour", "Hours"], {"1": ["red", "green", "blue"]})


def test_ndarray_with_options_in_meta_tags():
    meta = {"tags": {"explain": {"params": {"threshold": 0.9}, "seed": 5, "job": "submit"}}}
    request = parse_request(np.array([[55, 1, 40]]), ["Age", "Colour", "Hours"], meta, SCHEMA)
    assert request.rows.tolist() == [[55.0, 1.0, 40.0]]
    assert request.params == ExplainParams(threshold=0.9)
    assert (request.seed, request.submit, request.job_id) == (5, True, None)


def test_json_data_rows_as_mappings_with_category_names():
    body = {"instances": [{"Age": 55, "Colour": "green", "Hours": 40}, [30, 2, 20]], "seed": 2}
    request = parse_request(body, [], None, SCHEMA)
    assert request.rows.tolist() == [[55.0, 1.0, 40.0], [30.0, 2.0, 20.0]]
    assert request.params == ExplainParams() and request.seed == 2 and not request.submit


def test_json_data_single_flat_row_and_poll():
    assert parse_request({"instances": [55, 1, 40]}, [], None, SCHEMA).rows.shape == (1, 3)
    assert parse_request({"job_id": "abc"}, [], None, SCHEMA).job_id == "abc"


@pytest.mark.parametrize(
    ("features", "names", "meta", "message"),
    [
        ({"instances": [[1, 2]]}, [], None, "row 0: needs 3 features"),
        ({"instances": [[55, 7, 40]]}, [], None, "Colour=7.0 is not a category code in 0..2"),
        ({"instances": [[55, 1.5, 40]]}, [], None, "Colour=1.5 is not a category code"),
        (
            {"instances": [{"Age": 55, "Colour": "purple", "Hours": 1}]},
            [],
            None,
            "Colour='purple' is not one of",
        ),
        (
            {"instances": [{"Age": 55, "Hours": 1, "Shoe": 3}]},
            [],
            None,
            "unknown features ['Shoe'], missing features ['Colour']",
        ),
        ({"instances": [[55, 1, "forty"]]}, [], None, "Hours must be a number, got 'forty'"),
        ({"instances": [[float("nan"), 1, 40]]}, [], None, "Age is nan, not a finite number"),
        ({"instances": []}, [], None, "no rows to explain"),
        ({"rows": [[55, 1, 40]]}, [], None, "bad jsonData: rows: Extra inputs are not permitted"),
        (
            {"instances": [[55, 1, 40]], "params": {"threshold": 2}},
            [],
            None,
            "threshold: Input should be less than or equal to 1",
        ),
        (
            {"instances": [[55, 1, 40]], "params": {"treshold": 0.9}},
            [],
            None,
            "treshold: Extra inputs are not permitted",
        ),
        (
            {"instances": [[55, 1, 40]], "job": "later"},
            [],
            None,
            "bad jsonData: job: Input should be 'submit'",
        ),
        ({"instances": [[55, 1, 40]], "job_id": "x"}, [], None, "either jsonData.job_id"),
        ({"seed": 1}, [], None, "needs 'instances'"),
        ("some text", [], None, "strData/binData are not explained"),
        (
            np.array([[55, 1, 40]]),
            ["Hours", "Colour", "Age"],
            None,
            "data.names must be the model's features in order",
        ),
        (np.array([[55, 1, 40]]), [], {"tags": {"explain": {"seed": "x"}}}, "bad meta.tags.explain: seed"),
        (np.array([]), [], None, "no rows to explain"),
    ],
)
def test_bad_requests_name_the_problem(features, names, meta, message):
    with pytest.raises(InvalidInput) as caught:
        parse_request(features, names, meta, SCHEMA)
    assert caught.value.status_code == 400
    assert message in caught.value.message


def test_str_data_is_the_classic_demo_shape():
    body = {"explanations": [{}], "names": ["Age > 40"], "precision": 0.97, "coverage": 0.1}
    assert json.loads(to_seldon(body, "strData")) == {
        "names": ["Age > 40"],
        "precision": 0.97,
        "coverage": 0.1,
    }
    assert to_seldon(body, "jsonData") is body
    handle = {"job": {"id": "j", "status": "queued"}}
    assert to_seldon(handle, "strData") is handle  # a job handle has no strData form
