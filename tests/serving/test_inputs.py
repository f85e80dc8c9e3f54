"""Every accepted request shape, and every bad input refused with a 4xx naming the problem (REST)."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from .conftest import MAX_ROWS


@pytest.fixture(scope="module")
def rows(adult_test_rows) -> list[list[float]]:
    return adult_test_rows[:20].tolist()


@pytest.fixture(scope="module")
def names(bundle) -> list[str]:
    return list(bundle.manifest.feature_names)


def grew(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def probabilities(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["data"]["ndarray"])


def test_ndarray_matches_the_reference_pipeline(model, bundle, rows):
    answer = model.predict({"data": {"ndarray": rows}})
    body = answer.json()
    assert body["data"]["names"] == list(bundle.manifest.class_names)
    reference = bundle.sklearn_predict_proba(np.asarray(rows))
    np.testing.assert_allclose(probabilities(answer), reference, atol=1e-5)
    assert body["meta"]["tags"]["model_version"] == bundle.manifest.version
    assert body["meta"]["tags"]["artifact_sha256"] == bundle.manifest.artifact_sha256
    assert "metrics" not in body["meta"]  # INCLUDE_METRICS_IN_CLIENT_RESPONSE=false keeps them internal


def test_names_reorder_columns(model, rows, names):
    expected = probabilities(model.predict({"data": {"ndarray": rows}}))
    order = list(reversed(range(len(names))))
    shuffled = {"names": [names[j] for j in order], "ndarray": [[r[j] for j in order] for r in rows]}
    np.testing.assert_allclose(probabilities(model.predict({"data": shuffled})), expected)


def test_tensor_equals_ndarray(model, rows, names):
    expected = probabilities(model.predict({"data": {"ndarray": rows}}))
    tensor = {"shape": [len(rows), len(names)], "values": [v for r in rows for v in r]}
    np.testing.assert_allclose(probabilities(model.predict({"data": {"tensor": tensor}})), expected)


def test_json_data_accepts_category_names(model, bundle, rows, names):
    from glassbox.contract.schema import decode_row

    expected = probabilities(model.predict({"data": {"ndarray": rows[:3]}}))
    records = [decode_row(r, names, bundle.manifest.category_map) for r in rows[:3]]
    assert any(isinstance(v, str) for v in records[0].values())  # e.g. "Sex": "Female"
    np.testing.assert_allclose(probabilities(model.predict({"jsonData": records})), expected)
    np.testing.assert_allclose(probabilities(model.predict({"jsonData": records[0]})), expected[:1])


def test_request_id_is_seldon_puid_or_generated(model, rows):
    assert (
        model.predict({"data": {"ndarray": rows[:1]}, "meta": {"puid": "abc123"}}).json()["meta"]["puid"]
        == "abc123"
    )
    generated = model.predict({"data": {"ndarray": rows[:1]}}).json()["meta"]["puid"]
    assert len(generated) == 32


def test_metadata_describes_inputs_and_outputs(model, bundle):
    meta = requests.get(f"{model.url}/api/v1.0/metadata", timeout=10).json()
    assert meta["versions"] == [bundle.manifest.version]
    assert meta["inputs"][0]["schema"]["names"] == list(bundle.manifest.feature_names)
    assert meta["outputs"][0]["schema"]["names"] == list(bundle.manifest.class_names)
    sex = meta["inputs"][2]["schema"]["properties"]["Sex"]
    assert sex["type"] == "categorical" and "Female" in sex["categories"]
    assert meta["custom"]["artifact_sha256"] == bundle.manifest.artifact_sha256


def test_health_status(model, bundle):
    status = requests.get(f"{model.url}/health/status", timeout=10).json()["jsonData"]
    assert status["status"] == "ok" and status["model_version"] == bundle.manifest.version
    assert status["forwarding"] is False


def bad_inputs(rows: list[list[float]], names: list[str]) -> list[tuple[str, dict, str, list[str]]]:
    """(case, request kwargs for requests.post, rejection reason, words the message must contain)."""
    row = rows[0]
    sex, age = names.index("Sex"), names.index("Age")

    def with_cell(col: int, value: object) -> list:
        changed = list(row)
        changed[col] = value
        return changed

    record = dict(zip(names, row, strict=True))
    nan = '{"data": {"ndarray": [[NaN' + ", 1" * (len(row) - 1) + "]]}}"
    inf = '{"data": {"ndarray": [[Infinity' + ", 1" * (len(row) - 1) + "]]}}"
    dup = [names[1], *names[1:]]
    js = lambda body: {"json": body}  # noqa: E731
    raw = lambda text: {"data": text, "headers": {"Content-Type": "application/json"}}  # noqa: E731
    return [
        ("malformed JSON", raw('{"data": {"ndarray": [[1, 2'), "", ["JSON"]),
        ("malformed JSON form field", {"data": {"json": "{oops"}}, "malformed_json", ["malformed JSON"]),
        ("body is a list", js([row]), "bad_payload", ["JSON object"]),
        ("no data", js({"meta": {}}), "bad_payload", ["ndarray"]),
        ("strData", js({"strData": "hello"}), "bad_payload", ["strData"]),
        ("wrong width", js({"data": {"ndarray": [row[:-1]]}}), "wrong_width", ["11 values", "12"]),
        ("ragged rows", js({"data": {"ndarray": [row, row[:3]]}}), "wrong_width", ["row 1", "3 values"]),
        (
            "unknown name",
            js({"data": {"names": ["Salary", *names[1:]], "ndarray": [row]}}),
            "unknown_feature",
            ["'Salary'"],
        ),
        ("duplicate name", js({"data": {"names": dup, "ndarray": [row]}}), "duplicate_feature", [names[1]]),
        (
            "jsonData unknown feature",
            js({"jsonData": {**record, "Salary": 1}}),
            "unknown_feature",
            ["'Salary'"],
        ),
        (
            "jsonData missing feature",
            js({"jsonData": {k: v for k, v in record.items() if k != "Age"}}),
            "missing_feature",
            ["Age"],
        ),
        ("NaN", raw(nan), "non_finite", ["'Age'", "row 0"]),
        ("Infinity", raw(inf), "non_finite", ["'Age'"]),
        ("null", js({"data": {"ndarray": [with_cell(age, None)]}}), "missing_value", ["'Age'", "null"]),
        (
            "text in a numeric column",
            js({"data": {"ndarray": [with_cell(age, "old")]}}),
            "not_a_number",
            ["'Age'", "'old'"],
        ),
        (
            "unknown category",
            js({"jsonData": {**record, "Sex": "Alien"}}),
            "unknown_category",
            ["'Sex'", "'Alien'"],
        ),
        (
            "category code out of range",
            js({"data": {"ndarray": [with_cell(sex, 7)]}}),
            "unknown_category",
            ["'Sex'", "code 7"],
        ),
        (
            "fractional category code",
            js({"data": {"ndarray": [with_cell(sex, 0.5)]}}),
            "unknown_category",
            ["'Sex'"],
        ),
        ("empty batch", js({"data": {"ndarray": []}}), "empty_batch", ["no rows"]),
        ("1-D array", js({"data": {"ndarray": row}}), "bad_dimensions", ["2-D"]),
        ("3-D array", js({"data": {"ndarray": [[row]]}}), "bad_dimensions", ["2-D", "3-D"]),
        (
            "3-D tensor",
            js({"data": {"tensor": {"shape": [1, 1, len(row)], "values": row}}}),
            "bad_dimensions",
            ["3-D"],
        ),
        (
            "tensor values do not fill shape",
            js({"data": {"tensor": {"shape": [2, len(row)], "values": row}}}),
            "wrong_width",
            ["shape"],
        ),
        (
            "more rows than the limit",
            js({"data": {"ndarray": [row] * (MAX_ROWS + 1)}}),
            "too_many_rows",
            [f"at most {MAX_ROWS}"],
        ),
    ]


def test_every_bad_input_is_a_400_naming_the_problem(model, rows, names):
    before = model.metric_samples()
    for case, kwargs, _reason, words in bad_inputs(rows, names):
        path = "/predict" if case == "malformed JSON form field" else "/api/v1.0/predictions"
        answer = requests.post(model.url + path, timeout=30, **kwargs)
        assert answer.status_code == 400, f"{case}: {answer.status_code} {answer.text}"
        info = answer.json()["status"]["info"]
        for word in words:
            assert word in info, f"{case}: {word!r} not in {info!r}"
    after = model.metric_samples()
    for case, _kwargs, reason, _words in bad_inputs(rows, names):
        if reason:  # Seldon refuses unparseable JSON bodies itself, before the component sees them
            key = f'glassbox_model_input_rejections_total{{reason="{reason}"}}'
            assert after.get(key, 0) > before.get(key, 0), f"{case}: {key} did not grow"


def test_non_json_content_type_is_415_not_500(model):
    answer = requests.post(
        f"{model.url}/api/v1.0/predictions", data="1,2,3", headers={"Content-Type": "text/csv"}, timeout=10
    )
    assert answer.status_code == 415
    assert "application/json" in answer.json()["status"]["info"]


def test_malformed_feedback_is_a_400(model):
    answer = requests.post(f"{model.url}/send-feedback", data={"json": '{"reward": "lots"}'}, timeout=10)
    assert answer.status_code == 400, answer.text


def test_predictions_and_certainty_are_counted(model, bundle, rows):
    before = model.metric_samples()
    model.predict({"data": {"ndarray": rows}})
    model.predict({"data": {"ndarray": rows}}, headers={"X-Glassbox-Traffic": "explainer"})
    model.predict({"data": {"ndarray": rows[:1]}})
    after = model.metric_samples()
    P = bundle.predict_proba(np.asarray(rows + rows[:1]))
    for k, name in enumerate(bundle.manifest.class_names):
        key = f'glassbox_model_predictions_total{{predicted_class="{name}"}}'
        assert after[key] - before.get(key, 0) == int((P.argmax(1) == k).sum())
    assert grew(before, after, "glassbox_model_certainty_count") == len(rows) + 1  # not the explainer's
    assert grew(before, after, "glassbox_model_explainer_rows_total") == len(rows)
    below_07 = grew(before, after, 'glassbox_model_certainty_bucket{le="0.7"}')
    assert below_07 == int((P.max(1) <= 0.7).sum())
