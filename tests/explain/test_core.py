"""The explain core: every explanation is a function of (instance, parameters, seed)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from glassbox.contract.schema import FeatureSchema
from glassbox.explain.core import DeterministicExplainer, bind_predictor, json_safe
from glassbox.explain.params import ExplainParams

ROWS = np.array([[55, 1, 40], [30, 1, 20], [60, 0, 50], [45, 2, 35]], dtype=float)


def make(toy, predictor=None) -> DeterministicExplainer:
    predictor = predictor or (lambda X: toy.predict_proba(X).argmax(1))
    schema = FeatureSchema.of(toy.feature_names, toy.category_map)
    return DeterministicExplainer(toy.explainer, predictor, schema, toy.class_names, model_version="toy")


def test_binding_the_predictor_does_not_call_it(toy_anchor):
    calls = []

    def down(X):
        calls.append(len(X))
        raise ConnectionError("model down")

    bind_predictor(toy_anchor.explainer, down)  # alibi's reset_predictor would call it here (alibi#514)
    assert calls == []
    with pytest.raises(ConnectionError):
        make(toy_anchor, down).explain(ROWS[0], ExplainParams(), seed=1)
    assert calls == [1]  # the first call of an explanation: the instance's own label


def test_record_is_readable_and_json_safe(toy_anchor):
    record = make(toy_anchor).explain(ROWS[0], ExplainParams(), seed=1)
    assert record["prediction"] == "yes"
    assert record["instance"] == {"Age": 55, "Colour": "green", "Hours": 40}
    assert record["anchor"] and all(isinstance(p, str) for p in record["anchor"])
    assert any("Colour = green" in p for p in record["anchor"])
    assert 0 < record["precision"] <= 1 and 0 <= record["coverage"] <= 1
    assert record["stats"]["model_calls"] > 1 and record["stats"]["model_rows"] > 100
    assert json_safe(record) == record  # nothing left that JSON cannot express
    assert record["raw"]["names"] == record["anchor"]


def test_same_request_same_anchor_in_any_order(toy_anchor):
    explainer = make(toy_anchor)
    params = ExplainParams(threshold=0.9)
    forward = [explainer.explain(row, params, seed=3) for row in ROWS]
    backward = [explainer.explain(row, params, seed=3) for row in ROWS[::-1]][::-1]
    again = explainer.explain(ROWS[2], params, seed=3)
    for a, b in zip(forward, backward, strict=True):
        assert (a["anchor"], a["precision"], a["coverage"]) == (b["anchor"], b["precision"], b["coverage"])
    assert again["raw"] == forward[2]["raw"]


def test_the_seed_matters(toy_anchor):
    explainer = make(toy_anchor)
    coverages = {explainer.explain(ROWS[3], ExplainParams(), seed=s)["coverage"] for s in range(4)}
    assert len(coverages) > 1  # coverage is sampled: different seeds, different estimates


def test_concurrent_explanations_equal_sequential_ones(toy_anchor):
    explainer = make(toy_anchor)
    params = ExplainParams()
    expected = [explainer.explain(row, params, seed=7)["raw"] for row in ROWS]
    results: dict[int, list] = {}

    def work(worker: int) -> None:
        order = np.random.default_rng(worker).permutation(len(ROWS))
        results[worker] = [(i, explainer.explain(ROWS[i], params, seed=7)["raw"]) for i in order]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for pairs in results.values():
        for i, raw in pairs:
            assert raw == expected[i]


def test_json_safe_drops_what_json_cannot_say():
    value = {
        "a": np.array([1.5, np.nan]),
        "b": np.int64(3),
        "c": object(),
        "d": (np.float32(0.5), float("inf")),
    }
    assert json_safe(value) == {"a": [1.5, None], "b": 3, "d": [0.5, None]}


def test_speedups_give_alibis_own_explanation_with_fewer_calls(toy_anchor):
    explainer = make(toy_anchor)
    for row in ROWS:
        for seed in (1, 2):
            fast = explainer.explain(row, ExplainParams(threshold=0.99), seed=seed)
            plain = explainer.explain(row, ExplainParams(threshold=0.99), seed=seed, speedups=False)
            assert fast["raw"] == plain["raw"]
            assert fast["stats"]["model_rows"] == plain["stats"]["model_rows"]
            assert fast["stats"]["model_calls"] <= plain["stats"]["model_calls"]
    assert any(fast["stats"]["model_calls"] < plain["stats"]["model_calls"] for row in ROWS)
