"""Bad input to a real monitor: counted by reason, refused with a 4xx naming the problem, never fatal.

Also the body parser under hypothesis: any JSON (or bytes) either parses or raises ``RejectedInput``.
"""

from __future__ import annotations

import base64
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glassbox.contract.monitoring import parse_rows_body
from glassbox.contract.schema import FeatureSchema, RejectedInput

from .conftest import rows_body

SCHEMA = FeatureSchema.of(
    ["Age", "Colour", "Hours"], {"1": ["red", "green", "blue"]}, ["no", "yes"]
)  # a toy schema for the parser's properties


def as_lists(record: dict) -> dict:
    """A record with ``*_b64`` arrays turned into the JSON lists the parser also takes."""
    n, lists = len(record["rows"]), dict(record)
    for name in ("features", "probabilities"):
        raw = base64.b64decode(lists.pop(f"{name}_b64"))
        lists[name] = np.frombuffer(raw, dtype="<f8").reshape(n, -1).tolist()
    return lists


def b64(rows: list) -> str:
    return base64.b64encode(np.asarray(rows, dtype="<f8").tobytes()).decode()


def record(**overrides) -> dict:
    base = {
        "request_id": "r-1",
        "model_name": "toy",
        "model_version": "v1",
        "timestamp": 1764390000.5,
        "rows": [0, 1],
        "features": [[39, 1, 40], [52, 2, 60]],
        "probabilities": [[0.9, 0.1], [0.3, 0.7]],
    }
    return {**base, **overrides}


def test_refusals_are_counted_and_the_monitor_keeps_working(shared_monitor, monitored_bundle, heldout_rows):
    good = json.loads(rows_body(monitored_bundle, heldout_rows[:5], "good"))["records"][0]  # base64 arrays
    width = len(monitored_bundle.manifest.feature_names)
    lists = as_lists(good)  # the same record with JSON lists
    cases = {  # body -> (status, reason, words the message must hold)
        b"{not json": (400, "non_json", "not JSON"),
        json.dumps({"rows": []}).encode(): (400, "bad_body", '{"records"'),
        json.dumps({"records": [{**lists, "features": [row[:3] for row in lists["features"]]}]}).encode(): (
            422, "wrong_width", f"the model has {width} features",
        ),
        json.dumps({"records": [{**good, "model_version": "v0-retired"}]}).encode(): (
            422, "unknown_model_version", "v0-retired",
        ),
        json.dumps({"records": [{**lists, "features": [[1e999] * width] * 5}]}).encode(): (
            422, "non_finite", "not allowed",  # 1e999 parses as Infinity
        ),
    }  # fmt: skip
    before = shared_monitor.samples()
    for body, (status, reason, words) in cases.items():
        answer = shared_monitor.post(body)
        assert answer.status_code == status, (body[:80], answer.text)
        assert answer.json()["reason"] == reason and words in answer.json()["error"]

    after = shared_monitor.samples()
    for reason in ("non_json", "bad_body", "wrong_width", "unknown_model_version", "non_finite"):
        key = f'glassbox_monitor_rejected_total{{reason="{reason}"}}'
        assert after[key] - before.get(key, 0) == 1, reason

    # A body mixing good and bad records: the good ones count, the bad one is named.
    mixed = {"records": [good, {**good, "request_id": "other", "model_version": "v0"}]}
    answer = shared_monitor.post(mixed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 5 and answer.json()["errors"][0]["reason"] == "unknown_model_version"
    assert (
        shared_monitor.samples()["glassbox_monitor_rows_total"]
        == before.get("glassbox_monitor_rows_total", 0) + 5
    )
    again = shared_monitor.post(mixed)  # re-sent (at least once delivery): nothing counts twice
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 1


def test_api_key_and_body_size(monitor_factory, monitored_bundle, heldout_rows):
    monitor = monitor_factory(GLASSBOX_MONITOR_API_KEY="s3cret", GLASSBOX_MONITOR_MAX_BODY_BYTES="2048")
    body = rows_body(monitored_bundle, heldout_rows[:3], "key")
    assert monitor.post(body).status_code == 401
    assert monitor.post(body, **{"X-API-Key": "s3cret"}).status_code == 200
    big = rows_body(monitored_bundle, heldout_rows[:100], "big")
    answer = monitor.post(big, **{"X-API-Key": "s3cret"})
    assert answer.status_code == 413 and "exceeds 2048" in answer.json()["error"]
    samples = monitor.samples()
    assert samples['glassbox_monitor_rejected_total{reason="unauthorized"}'] == 1
    assert samples['glassbox_monitor_rejected_total{reason="too_large"}'] == 1
    assert samples["glassbox_monitor_rows_total"] == 3


def test_parser_takes_what_the_builder_writes():
    body = json.dumps({"records": [record(), record(request_id="r-2", rows=[4], features=[[20, 0, 10]],
                                                     probabilities=[[0.5, 0.5]])]})  # fmt: skip
    parsed = parse_rows_body(body, SCHEMA, "v1", 100)
    assert parsed.request_ids == ["r-1", "r-2"] and not parsed.errors
    assert parsed.X.tolist() == [[39, 1, 40], [52, 2, 60], [20, 0, 10]]
    assert parsed.record_of_row.tolist() == [0, 0, 1] and parsed.row_in_request.tolist() == [0, 1, 4]


def test_parser_reads_base64_arrays_exactly():
    X = np.array([[39.5, 1, 40], [52, 2, 60.25]])
    parsed = parse_rows_body(json.dumps({"records": [record_b64(features_b64=b64(X))]}), SCHEMA, "v1", 100)
    assert not parsed.errors and np.array_equal(parsed.X, X)
    short = record_b64(features_b64=b64([[39, 1], [52, 2]]))
    (error,) = parse_rows_body(json.dumps({"records": [short]}), SCHEMA, "v1", 100).errors
    assert error.reason == "wrong_width" and "need 6" in error.message


def test_parser_names_each_bad_record():
    bad = {
        "wrong_width": record(features=[[39, 1], [52, 2]]),
        "unknown_category": record(features=[[39, 7, 40], [52, 2, 60]]),
        "bad_probabilities": record(probabilities=[[0.9, 0.9], [0.3, 0.7]]),
        "bad_record": record(features=[["39", 1, 40], [52, 2, 60]]),
        "unknown_model_version": record(model_version="v2"),
    }
    parsed = parse_rows_body(json.dumps({"records": list(bad.values())}), SCHEMA, "v1", 100)
    assert [e.reason for e in parsed.errors] == list(bad)
    assert len(parsed) == 0
    ragged = record(features=[[39, 1, 40], [52, 2]])
    assert (
        parse_rows_body(json.dumps({"records": [ragged]}), SCHEMA, "v1", 100).errors[0].reason
        == "wrong_width"
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)


def record_b64(**overrides) -> dict:
    base = record()
    base["features_b64"], base["probabilities_b64"] = (
        b64(base.pop("features")),
        b64(base.pop("probabilities")),
    )
    return {**base, **overrides}


def mutated_records() -> st.SearchStrategy:
    """Valid records (lists or base64) with one field replaced by anything JSON can hold, or dropped."""
    field = st.sampled_from(sorted(set(record()) | set(record_b64())))
    return st.one_of(
        st.tuples(st.sampled_from([record, record_b64]), field, JSON).map(lambda t: t[0](**{t[1]: t[2]})),
        st.tuples(st.sampled_from([record, record_b64]), field).map(
            lambda t: {k: v for k, v in t[0]().items() if k != t[1]}
        ),
        st.tuples(field.filter(lambda f: f.endswith("_b64")), st.binary(max_size=64)).map(
            lambda t: record_b64(**{t[0]: base64.b64encode(t[1]).decode()})
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.lists(mutated_records(), max_size=3).map(lambda rs: {"records": rs})))
def test_parser_never_fails_otherwise(payload):
    try:
        parsed = parse_rows_body(json.dumps(payload), SCHEMA, "v1", 100)
    except RejectedInput as exc:
        assert exc.reason in ("bad_body", "too_many_rows") and exc.status_code == 400
        return
    assert parsed.X.shape == (len(parsed), 3) and parsed.probabilities.shape == (len(parsed), 2)
    assert np.isfinite(parsed.X).all()
    assert len(parsed.request_ids) + len(parsed.errors) == len(payload["records"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_parser_refuses_any_bytes_cleanly(raw):
    try:
        parse_rows_body(raw, SCHEMA, "v1", 100)
    except RejectedInput as exc:
        assert exc.reason in ("non_json", "bad_body")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(JSON, st.lists(mutated_records(), max_size=3).map(lambda rs: {"records": rs})))
def test_no_body_gets_a_5xx_from_the_real_monitor(shared_monitor, payload):
    answer = shared_monitor.post(json.dumps(payload))
    assert answer.status_code in (200, 400, 422), answer.text
    assert answer.status_code == 200 or answer.json()["reason"]
