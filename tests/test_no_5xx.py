"""No body reaches a 5xx: hypothesis mutates good requests of every endpoint of both Seldon components.

Each example takes a good body of one endpoint (the model's predictions and feedback, the explainer's
predictions, explain path, job polling, metadata) and puts an arbitrary JSON value at one place in it
(or sends an arbitrary value, a ragged, huge or deeply nested array instead): the answer must be below
500, a 4xx must carry Seldon's error body with a message, and a good request still succeeds afterwards.
Valid explain bodies ask for a cheap anchor search so that mutated-but-valid rows stay fast.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import start_explainer_service, start_model_service

pytestmark = pytest.mark.slow

FEATURES = [
    "Age", "Workclass", "Education", "Marital Status", "Occupation", "Relationship", "Race", "Sex",
    "Capital Gain", "Capital Loss", "Hours per week", "Country",
]  # fmt: skip
ROW = [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]
RECORD = {
    "Age": 39, "Workclass": "State-gov", "Education": "Bachelors", "Marital Status": "Never-Married",
    "Occupation": "Admin", "Relationship": "Not-in-family", "Race": "White", "Sex": "Male",
    "Capital Gain": 2174, "Capital Loss": 0, "Hours per week": 40, "Country": "United-States",
}  # fmt: skip
CHEAP = {"params": {"coverage_samples": 10, "batch_size": 10, "min_samples_start": 10, "max_anchor_size": 1}}
# Attributions, reason codes and a cheap counterfactual search (issue #13), with anchors.
MORE_METHODS = {
    **CHEAP,
    "method": ["anchors", "attributions", "counterfactuals"],
    "attributions": {"classes": "all"},
    "reason_codes": {"top_k": 3},
    "counterfactuals": {"k": 1, "method": "random", "sample_size": 10},
}
MODEL_EXAMPLES = 5500
EXPLAINER_EXAMPLES = 4500
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=True,  # the same 10,000 bodies every run: a failure here reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

PREDICTION = {"data": {"names": FEATURES, "ndarray": [ROW]}, "meta": {"puid": "p1", "tags": {"a": "b"}}}
MODEL_BODIES = {
    "/api/v1.0/predictions": [
        PREDICTION,
        {"data": {"names": FEATURES, "tensor": {"shape": [1, 12], "values": ROW}}},
        {"jsonData": RECORD},
        {"jsonData": [RECORD, RECORD]},
    ],
    "/api/v1.0/feedback": [
        {
            "request": PREDICTION,
            "response": {
                "data": {"names": ["<=50K", ">50K"], "ndarray": [[0.9, 0.1]]},
                "meta": {"puid": "p1"},
            },
            "truth": {"data": {"names": ["<=50K", ">50K"], "ndarray": [[1, 0]]}},
            "reward": 1,
        },
        {"request": {"jsonData": RECORD}, "truth": {"strData": ">50K"}, "reward": 0},
    ],
}
EXPLAINER_BODIES = {
    "/api/v1.0/predictions": [
        {"data": {"names": FEATURES, "ndarray": [ROW]}, "meta": {"tags": {"explain": {**CHEAP, "seed": 1}}}},
        {"jsonData": {"instances": [ROW], **CHEAP, "seed": 1}},
        {"jsonData": {"instances": [RECORD], "names": None, **CHEAP, "job": "submit"}},
        {"jsonData": {"job_id": "0123456789abcdef"}},
    ],
    "/api/v1.0/explain": [
        {"data": {"ndarray": [ROW]}, "meta": {"tags": {"explain": CHEAP}}},
        {"data": {"ndarray": [ROW]}, "meta": {"tags": {"explain": MORE_METHODS}}},  # issue #13
    ],
    "/api/v1.0/feedback": [{"request": PREDICTION, "reward": 1}],
}
GETS = [
    "/api/v1.0/explain/jobs/{}",
    "/api/v1.0/metadata",
    "/metadata",
    "/health/status",
    "/api/v1.0/predictions",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
odd_arrays = st.sampled_from(
    [
        [[0] * 12] * 1500,  # more rows than allowed
        [[0] * 12, [0] * 3],  # ragged
        [[[0] * 12]],  # 3-D
        [0] * 12,  # flat
        [[0] * 5000],  # far too wide
        [],
    ]
) | st.integers(min_value=1, max_value=500).map(lambda depth: json.loads("[" * depth + "]" * depth))
# Deeper than any JSON parser's recursion limit: only as a whole body, written as text.
too_deep = st.integers(min_value=1000, max_value=200_000).map(lambda depth: "[" * depth + "]" * depth)


def places(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into ``value`` (dict keys and list indices), the root included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += places(item, (*path, index))
    return found


def replaced(value: Any, path: tuple, new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest and isinstance(copy, dict):
        del copy[head]
    else:
        copy[head] = replaced(copy[head], rest, new, delete)
    return copy


@st.composite
def mutated(draw: st.DrawFn, bodies: dict[str, list[dict]]) -> tuple[str, str]:
    """(path, JSON text): one good body with one place replaced, deleted, or the whole body odd."""
    path = draw(st.sampled_from(sorted(bodies)))
    if draw(st.integers(min_value=0, max_value=99)) == 0:
        return path, draw(too_deep)
    body = draw(st.sampled_from(bodies[path]))
    where = draw(st.sampled_from(places(body)))
    new = draw(json_values | odd_arrays)
    return path, json.dumps(replaced(body, where, new, draw(st.booleans())))


def check(answer: requests.Response, tally: Counter) -> None:
    tally[answer.status_code] += 1
    assert answer.status_code < 500, answer.text[:500]
    if answer.status_code >= 400:
        assert answer.headers.get("Content-Type", "").startswith("application/json"), (
            answer.status_code,
            answer.text[:500],
        )
        info = answer.json()["status"]["info"]
        assert isinstance(info, str) and info, answer.text[:500]


@pytest.fixture(scope="module")
def services(trained_artifacts, tmp_path_factory):
    model = start_model_service(trained_artifacts, tmp_path_factory.mktemp("fuzz-model"), threads=4)
    explainer = start_explainer_service(
        trained_artifacts,
        tmp_path_factory.mktemp("fuzz-explainer"),
        model_url=f"{model.url}/api/v1.0/predictions",
        env={
            "GLASSBOX_EXPLAINER_MAX_PENDING": "100000",  # the fuzz tests bodies, not the 503 for overload
            "GLASSBOX_EXPLAINER_SYNC_WAIT_S": "0.05",
        },
    )
    yield model, explainer
    explainer.process.stop()
    model.process.stop()


def test_no_body_gets_a_5xx_from_the_model(services):
    model, _ = services
    session, tally = requests.Session(), Counter()

    @given(mutated(MODEL_BODIES))
    def send(case: tuple[str, str]) -> None:
        path, body = case
        check(session.post(model.url + path, data=body, headers={"Content-Type": "application/json"}), tally)

    settings(FUZZ, max_examples=MODEL_EXAMPLES)(send)()
    assert sum(tally.values()) >= MODEL_EXAMPLES * 0.95, tally
    assert tally[200] and sum(n for code, n in tally.items() if 400 <= code < 500), tally
    good = model.predict(PREDICTION)
    assert good.status_code == 200 and len(good.json()["data"]["ndarray"]) == 1


def test_no_body_gets_a_5xx_from_the_explainer(services):
    model, explainer = services
    session, tally = requests.Session(), Counter()

    gets = st.tuples(st.just("GET"), st.sampled_from(GETS), st.text(max_size=40))
    posts = mutated(EXPLAINER_BODIES).map(lambda case: ("POST", *case))

    @given(posts | gets)
    def send(case: tuple[str, str, str]) -> None:
        method, path, body = case
        if method == "GET":  # polling, metadata: the fuzzed text goes into the URL or the json= argument
            url = explainer.url + path.format(requests.utils.quote(body, safe=""))
            check(session.get(url, params={"json": body} if "{}" not in path else None), tally)
            return
        check(
            session.post(explainer.url + path, data=body, headers={"Content-Type": "application/json"}), tally
        )

    settings(FUZZ, max_examples=EXPLAINER_EXAMPLES)(send)()
    assert sum(tally.values()) >= EXPLAINER_EXAMPLES * 0.95, tally
    assert tally[200] and tally[400] and tally[404], tally
    good = explainer.explain({"jsonData": {"instances": [ROW], **CHEAP}})
    assert good.status_code == 200, good.text
    assert model.predict(PREDICTION).status_code == 200
