"""Attributions, reason codes and counterfactuals (issue #13): exact, additive, deterministic, served.

TreeSHAP over the compact forest is checked against shap's own ``TreeExplainer`` (path-dependent) on
the sklearn forest, and for additivity on a sample of the test split; the served methods run in a real
explainer microservice that calls a real model microservice.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import requests
from seldon_core.seldon_client import SeldonClient

from conftest import start_explainer_service, start_model_service
from glassbox.pipeline.artifacts import MANIFEST, files_digest, load_bundle, resolve_version_dir, sha256_file
from glassbox.pipeline.compact import CompactPipeline
from glassbox.pipeline.fastpath import COMPACT_FILE
from glassbox.pipeline.treeshap import NoCover, TreeShap

pytestmark = pytest.mark.slow
SHAP_ROWS = 20  # rows compared with shap (~0.3-0.5 s each in shap)
ADDITIVE_ROWS = 150  # rows of the test split whose values must add up (~0.1-0.2 s each here)


@pytest.fixture(scope="module")
def bundle(trained_artifacts):
    return load_bundle(trained_artifacts)


@pytest.fixture(scope="module")
def treeshap(bundle) -> TreeShap:
    compact = CompactPipeline.from_bytes(bundle.read_verified(COMPACT_FILE), with_cover=True)
    return TreeShap(compact)


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
        env={"GLASSBOX_EXPLAINER_MAX_ROWS": "3"},
    )
    yield service
    service.process.stop()


def explanations(reply: requests.Response) -> list[dict]:
    assert reply.status_code == 200, reply.text
    return reply.json()["jsonData"]["explanations"]


def served_probability(model, rows: np.ndarray) -> np.ndarray:
    reply = model.predict({"data": {"ndarray": np.atleast_2d(rows).tolist()}})
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["data"]["ndarray"])


# --- the algorithm, in process ---------------------------------------------------------------------


def test_values_equal_shap_tree_explainer_path_dependent(bundle, treeshap, adult_test_rows):
    import shap

    preprocessor, forest = bundle.pipeline.steps[0][1], bundle.pipeline.steps[-1][1]
    rows = adult_test_rows[:SHAP_ROWS]
    columns = preprocessor.transform(rows)
    columns = np.asarray(columns.toarray() if hasattr(columns, "toarray") else columns)
    # sklearn's trees see float32; give shap the same numbers so both walk the same branches.
    columns = columns.astype(np.float32).astype(np.float64)
    explainer = shap.TreeExplainer(forest, feature_perturbation="tree_path_dependent")
    theirs = np.asarray(explainer.shap_values(columns, check_additivity=True))  # (rows, columns, classes)
    assert theirs.shape == (SHAP_ROWS, len(treeshap.compact.kind), 2)
    source = treeshap.compact.source
    assert abs(treeshap.base_value - explainer.expected_value[1]) <= 1e-6
    for i, row in enumerate(rows):
        ours = treeshap.explain(row).values
        per_feature = np.bincount(source, weights=theirs[i, :, 1], minlength=12)
        assert np.abs(ours - per_feature).max() <= 1e-6, i
        # the other class: shap's values are ours negated
        assert np.abs(-ours - np.bincount(source, weights=theirs[i, :, 0], minlength=12)).max() <= 1e-6


def test_base_plus_values_is_the_probability_on_the_test_split(bundle, treeshap, adult_test_rows):
    rows = adult_test_rows[:ADDITIVE_ROWS]
    sklearn = bundle.sklearn_predict_proba(rows)[:, 1]
    compact = treeshap.compact.predict_proba(np.ascontiguousarray(rows))[:, 1]
    worst = 0.0
    for row, p_sklearn, p_compact in zip(rows, sklearn, compact, strict=True):
        explained = treeshap.explain(row)
        total = explained.base_value + explained.values.sum()
        assert abs(total - p_compact) <= 1e-9 and explained.probability == pytest.approx(p_compact, abs=1e-12)
        worst = max(worst, abs(total - p_sklearn))
    assert worst <= 1e-6


def test_same_row_same_values(treeshap, adult_test_rows):
    first, second = treeshap.explain(adult_test_rows[5]), treeshap.explain(adult_test_rows[5])
    assert np.array_equal(first.values, second.values) and first.base_value == second.base_value


def test_threads_at_once_get_the_values_one_thread_gets(treeshap, adult_test_rows):
    """numba's workqueue layer aborts on two parallel launches at once: TreeShap serialises them."""
    from concurrent.futures import ThreadPoolExecutor

    rows = list(adult_test_rows[6:10])
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(treeshap.explain, rows))
    for row, explained in zip(rows, together, strict=True):
        assert np.array_equal(explained.values, treeshap.explain(row).values)


def test_a_forest_without_cover_is_refused_naming_the_retrain(bundle):
    compact = CompactPipeline.from_bytes(bundle.read_verified(COMPACT_FILE))  # cover not loaded
    with pytest.raises(NoCover, match=r"no per-node cover.*retrain"):
        TreeShap(compact)


# --- served ----------------------------------------------------------------------------------------


def test_served_attributions_match_and_add_up_to_the_served_probability(
    explainer, model, treeshap, bundle, adult_test_rows
):
    rows = adult_test_rows[10:12]
    body = {
        "data": {"ndarray": rows.tolist()},
        "meta": {"tags": {"explain": {"method": "attributions", "attributions": {"classes": "all"}}}},
    }
    records = explanations(explainer.explain(body, path="/api/v1.0/explain"))
    served = served_probability(model, rows)
    names, classes = bundle.manifest.feature_names, bundle.manifest.class_names
    for row, record, probabilities in zip(rows, records, served, strict=True):
        assert record["methods"] == ["attributions"] and "anchor" not in record
        attributions = record["attributions"]
        predicted = classes[int(np.argmax(probabilities))]
        assert record["prediction"] == attributions["class"] == predicted
        assert set(attributions["values"]) == set(names)  # (the JSON answer sorts keys)
        total = attributions["base_value"] + sum(attributions["values"].values())
        assert total == pytest.approx(probabilities[classes.index(predicted)], abs=1e-6)
        assert attributions["probability"] == pytest.approx(total, abs=1e-9)
        local = treeshap.explain(row)
        positive = attributions["by_class"][classes[1]]
        assert np.allclose([positive["values"][n] for n in names], local.values, atol=1e-12)
        negative = attributions["by_class"][classes[0]]
        assert negative["base_value"] == pytest.approx(1 - positive["base_value"], abs=1e-12)
        assert "path-dependent TreeSHAP" in attributions["definition"]
        # reason codes: toward the adverse class (<=50K), strongest first, as sentences
        codes = record["reason_codes"]
        assert codes["adverse_class"] == "<=50K" and codes["adverse"] == (predicted == "<=50K")
        toward = negative["values"]
        expected = sorted((n for n in names if toward[n] > 0), key=lambda n: -toward[n])[:4]
        assert [r["feature"] for r in codes["reasons"]] == expected
        for reason in codes["reasons"]:
            assert reason["contribution"] == pytest.approx(toward[reason["feature"]])
            assert reason["sentence"].startswith(f"{reason['feature']} = ")
            assert reason["sentence"].endswith(f"lowered the approval score by {reason['contribution']:.2f}")


def test_attributions_are_cached_and_deterministic(explainer, adult_test_rows):
    body = {"jsonData": {"instances": [adult_test_rows[20].tolist()], "method": ["attributions"], "seed": 3}}
    first, second = explanations(explainer.explain(body))[0], explanations(explainer.explain(body))[0]
    assert (first["cached"], second["cached"]) == (False, True)
    other_k = {**body["jsonData"], "reason_codes": {"top_k": 1}}
    third = explanations(explainer.explain({"jsonData": other_k}))[0]
    assert third["cached"] is False and len(third["reason_codes"]["reasons"]) <= 1
    assert third["attributions"] == first["attributions"]  # the options key the cache, not the values


def test_attributions_run_as_a_job_and_are_polled(explainer, adult_test_rows):
    body = {
        "jsonData": {"instances": [adult_test_rows[22].tolist()], "method": "attributions", "job": "submit"}
    }
    submitted = explainer.explain(body)
    assert submitted.status_code == 200, submitted.text
    job = submitted.json()["jsonData"]["job"]
    deadline = time.monotonic() + 60
    while (polled := requests.get(explainer.url + job["poll"], timeout=10).json())["job"]["status"] != "done":
        assert polled["job"]["status"] in ("queued", "running") and time.monotonic() < deadline, polled
        time.sleep(0.1)
    assert polled["explanations"][0]["methods"] == ["attributions"]
    assert polled["names"] == [] and polled["precision"] is None  # no anchor asked for


def test_all_methods_at_once_keep_the_anchor_fields(explainer, adult_test_rows):
    options = {
        "method": ["counterfactuals", "anchors", "attributions"],
        "params": {"threshold": 0.9},
        "reason_codes": {"top_k": 2},
        "counterfactuals": {"k": 2},
    }
    record = explanations(
        explainer.explain({"jsonData": {"instances": [adult_test_rows[21].tolist()], **options}})
    )[0]
    assert record["methods"] == ["anchors", "attributions", "counterfactuals"]
    for key in ("anchor", "precision", "coverage", "raw", "instance", "prediction", "model_version", "seed"):
        assert key in record, key
    assert record["threshold"] == 0.9 and record["threshold_met"] == (record["precision"] >= 0.9)
    assert len(record["reason_codes"]["reasons"]) <= 2 and len(record["counterfactuals"]["items"]) <= 2


def test_counterfactuals_respect_immutable_features_and_are_verified(
    explainer, model, adult_test_rows, bundle
):
    schema_names = bundle.manifest.feature_names
    category = {int(k): v for k, v in bundle.manifest.category_map.items()}
    body = {"jsonData": {"instances": adult_test_rows[30:33].tolist(), "method": "counterfactuals"}}
    records = explanations(explainer.explain(body))
    found = 0
    for row, record in zip(adult_test_rows[30:33], records, strict=True):
        result = record["counterfactuals"]
        assert result["immutable"] == ["Race", "Sex", "Country"] and result["increase_only"] == ["Age"]
        assert result["found"] == bool(result["items"]) and result["message"]
        for item in result["items"]:
            found += 1
            changed = dict(record["instance"])
            for change in item["changes"]:
                assert change["feature"] not in ("Race", "Sex", "Country")
                assert record["instance"][change["feature"]] == change["from"] != change["to"]
                changed[change["feature"]] = change["to"]
            assert changed["Age"] >= record["instance"]["Age"]
            assert item["verified"] is True and item["prediction"] != record["prediction"]
            assert item["sentence"].startswith("Had ") and item["prediction"] in item["sentence"]
            # the served model, asked here again, gives the changed row the counterfactual's class
            encoded = [
                category[j].index(changed[n]) if j in category else changed[n]
                for j, n in enumerate(schema_names)
            ]
            probabilities = served_probability(model, np.array([encoded], dtype=float))[0]
            assert bundle.manifest.class_names[int(np.argmax(probabilities))] == item["prediction"]
            assert probabilities.max() == pytest.approx(item["probability"], abs=1e-9)
        assert row is not None
    assert found >= 1
    again = explanations(explainer.explain({"jsonData": {**body["jsonData"], "seed": 1}}))
    assert [r["counterfactuals"] for r in again] == [
        r["counterfactuals"] for r in records
    ]  # seed 1 = default


def test_when_none_is_found_within_the_budget_the_answer_says_so(explainer, adult_test_rows):
    options = {"method": "counterfactuals", "counterfactuals": {"k": 1, "sample_size": 10}}
    none_found = []
    for start in range(0, 30, 3):
        body = {"jsonData": {"instances": adult_test_rows[start : start + 3].tolist(), **options}}
        none_found += [r for r in explanations(explainer.explain(body)) if not r["counterfactuals"]["found"]]
    assert none_found  # a budget of 10 random samples leaves some of 30 rows without one
    for record in none_found:
        result = record["counterfactuals"]
        assert result["items"] == []
        assert result["message"].startswith(
            "no counterfactual found within the budget (DiCE random, sample_size 10)"
        )


def test_genetic_counterfactuals_are_deterministic_per_seed(explainer, adult_test_rows):
    options = {
        "method": "counterfactuals",
        "counterfactuals": {"method": "genetic", "k": 2, "max_iterations": 30},
    }
    row = adult_test_rows[40].tolist()
    first = explanations(explainer.explain({"jsonData": {"instances": [row], **options, "seed": 7}}))[0]
    # Anchor parameters key the cache even when anchors are not asked for: this one is computed afresh.
    again = explanations(
        explainer.explain({"jsonData": {"instances": [row], **options, "seed": 7, "params": {"tau": 0.2}}})
    )[0]
    assert again["cached"] is False
    assert again["counterfactuals"] == first["counterfactuals"]


def test_seldon_client_asks_for_attributions_in_meta_tags(explainer, adult_test_rows):
    client = SeldonClient(
        gateway="seldon", gateway_endpoint=explainer.url.removeprefix("http://"), transport="rest"
    )
    reply = client.predict(
        data=adult_test_rows[50].reshape(1, -1),
        payload_type="ndarray",
        meta={"explain": {"method": "attributions"}},
        client_return_type="dict",
    )
    assert reply.success, reply.msg
    record = reply.response["jsonData"]["explanations"][0]
    assert record["methods"] == ["attributions"] and len(record["attributions"]["values"]) == 12


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"method": "lime"}, "unknown method 'lime'"),
        ({"method": ["anchors", "shap"]}, "unknown method 'shap'"),
        ({"method": []}, "name at least one method"),
        ({"method": "counterfactuals", "counterfactuals": {"k": 11}}, "counterfactuals.k"),
        ({"method": "counterfactuals", "counterfactuals": {"k": 0}}, "counterfactuals.k"),
        ({"method": "counterfactuals", "counterfactuals": {"method": "kdtree"}}, "counterfactuals.method"),
        (
            {"method": "counterfactuals", "counterfactuals": {"sample_size": 10**6}},
            "counterfactuals.sample_size",
        ),
        ({"method": "attributions", "reason_codes": {"top_k": 13}}, "reason_codes.top_k"),
        ({"method": "attributions", "attributions": {"classes": "some"}}, "attributions.classes"),
        ({"method": "attributions", "attributions": {"colour": "red"}}, "attributions.colour"),
    ],
)
def test_bad_parameters_are_400_naming_them(explainer, adult_test_rows, options, named):
    row = adult_test_rows[0].tolist()
    for body, path in (
        ({"jsonData": {"instances": [row], **options}}, "/api/v1.0/predictions"),
        ({"data": {"ndarray": [row]}, "meta": {"tags": {"explain": options}}}, "/api/v1.0/explain"),
    ):
        reply = explainer.explain(body, path=path)
        assert reply.status_code == 400, reply.text
        assert named in reply.json()["status"]["info"]


def test_old_requests_are_answered_as_before(explainer, adult_test_rows):
    record = explanations(explainer.explain({"data": {"ndarray": [adult_test_rows[0].tolist()]}}))[0]
    assert (
        record["methods"] == ["anchors"] and "attributions" not in record and "counterfactuals" not in record
    )
    assert {"anchor", "precision", "coverage", "raw", "instance", "prediction", "stats"} <= set(record)


# --- another model version -------------------------------------------------------------------------


def resigned_copy(source_dir, target_root):
    """A copy of the bundle with one file changed and the manifest re-signed: another artifact_sha256,
    the same forest (so only the identity check can tell)."""
    version_dir = resolve_version_dir(source_dir)
    target = target_root / version_dir.name
    shutil.copytree(version_dir, target)
    with open(target / "model_card.md", "a") as handle:
        handle.write("\nAnother release.\n")
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["files"]["model_card.md"] = sha256_file(target / "model_card.md")
    manifest["artifact_sha256"] = files_digest(manifest["files"])
    (target / MANIFEST).write_text(json.dumps(manifest))
    return target, manifest["artifact_sha256"]


def test_attributions_are_refused_when_the_model_serves_another_version(
    trained_artifacts, tmp_path, processes, adult_test_rows
):
    other_dir, other_sha = resigned_copy(trained_artifacts, tmp_path)
    other_model = start_model_service(other_dir, tmp_path / "other-model")
    processes.append(other_model.process)
    tags = other_model.predict({"data": {"ndarray": [adult_test_rows[0].tolist()]}}).json()["meta"]["tags"]
    assert tags["artifact_sha256"] == other_sha
    refusing = start_explainer_service(
        trained_artifacts, tmp_path / "explainer", model_url=f"{other_model.url}/api/v1.0/predictions"
    )
    processes.append(refusing.process)
    for method in ("attributions", "counterfactuals"):
        reply = refusing.explain({"jsonData": {"instances": [adult_test_rows[0].tolist()], "method": method}})
        assert reply.status_code == 409, reply.text
        info = reply.json()["status"]["info"]
        assert f"model serves artifact {other_sha[:12]}" in info and "another model version" in info
    requests.get(f"{refusing.url}/health/status", timeout=10)
    assert failures(refusing).get("model_version_mismatch") == 2


def failures(service) -> dict[str, float]:
    """``glassbox_explainer_failures_total`` by reason, summed over Seldon's labels."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(requests.get(service.metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "glassbox_explainer_failures_total":
                reason = sample.labels["reason"]
                totals[reason] = totals.get(reason, 0.0) + sample.value
    return totals


def test_an_anchors_only_explainer_refuses_the_other_methods_naming_the_setting(
    trained_artifacts, model, tmp_path, processes, adult_test_rows
):
    anchors_only = start_explainer_service(
        trained_artifacts,
        tmp_path / "anchors-only",
        model_url=f"{model.url}/api/v1.0/predictions",
        env={"GLASSBOX_EXPLAINER_METHODS": '["anchors"]'},
    )
    processes.append(anchors_only.process)
    row = [adult_test_rows[0].tolist()]
    for method in ("attributions", "counterfactuals"):
        reply = anchors_only.explain({"jsonData": {"instances": row, "method": method}})
        assert reply.status_code == 409, reply.text
        assert "GLASSBOX_EXPLAINER_METHODS" in reply.json()["status"]["info"]
    assert explanations(anchors_only.explain({"jsonData": {"instances": row}}))[0]["anchor"]
