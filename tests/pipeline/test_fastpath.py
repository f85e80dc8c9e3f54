"""The fast path agrees with the sklearn reference: the compact forest on the whole test split, the
ONNX graph for older versions and other estimators."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from conftest import ADULT_CONFIG
from glassbox.pipeline import fastpath
from glassbox.pipeline.artifacts import load_bundle
from glassbox.pipeline.compact import NEXT_IS_RIGHT, supports
from glassbox.pipeline.config import load_config
from glassbox.pipeline.data import load_dataset
from glassbox.pipeline.fastpath import CompactFastPath
from glassbox.pipeline.onnx_graph import OnnxFastPath, to_onnx_bytes
from glassbox.pipeline.split import split_rows
from glassbox.pipeline.train import train


@pytest.fixture(scope="module")
def test_split():
    config = load_config(ADULT_CONFIG)
    data = load_dataset(config)
    rows = split_rows(data, config.split).test
    return data.X[rows], data.y[rows]


def test_probabilities_and_argmax_equal_sklearn_on_the_test_split(trained_artifacts, test_split):
    bundle = load_bundle(trained_artifacts)
    X, _ = test_split
    fast, reference = bundle.predict_proba(X), bundle.sklearn_predict_proba(X)
    assert fast.shape == reference.shape == (2560, 2)
    assert np.abs(fast - reference).max() <= 1e-5
    np.testing.assert_array_equal(bundle.predict(X), bundle.pipeline.predict(X))


def test_missing_values_are_imputed_like_sklearn(trained_artifacts, test_split):
    bundle = load_bundle(trained_artifacts)
    X = test_split[0][:20].copy()
    X[0, 0] = np.nan  # Age: numeric median
    X[1, 7] = np.nan  # Sex: categorical median code
    assert np.abs(bundle.predict_proba(X) - bundle.sklearn_predict_proba(X)).max() <= 1e-5


def test_unseen_category_code_is_ignored_like_sklearn(trained_artifacts, test_split):
    bundle = load_bundle(trained_artifacts)
    X = test_split[0][:5].copy()
    X[:, 1] = 99  # no such Workclass: handle_unknown="ignore" on both paths
    assert np.abs(bundle.predict_proba(X) - bundle.sklearn_predict_proba(X)).max() <= 1e-5


def test_the_report_records_the_check(trained_artifacts):
    report = load_bundle(trained_artifacts).report()
    assert report["fast_path"]["equivalent"] is True
    assert report["fast_path"]["rows"] == 2560 and report["fast_path"]["argmax_mismatches"] == 0


def test_the_recipe_is_compiled_and_an_onnx_version_still_loads(trained_artifacts, test_split):
    bundle = load_bundle(trained_artifacts)
    assert isinstance(bundle.fast_path, CompactFastPath)
    X = test_split[0][:200]
    # A version written before the compact forest holds model.onnx: it loads with the ONNX graph.
    onnx = fastpath.load({fastpath.ONNX_FILE: to_onnx_bytes(bundle.pipeline, 12)}, 12)
    assert isinstance(onnx, OnnxFastPath)
    assert np.abs(onnx.predict_proba(X) - bundle.predict_proba(X)).max() <= 1e-5


def test_every_split_is_sklearns_including_best_first_trees(toy_training, tmp_path):
    """max_leaf_nodes grows trees best-first (children not after their parent); ExtraTrees splits at
    random thresholds, which the float32 rounding must keep on the right side."""
    params = {"n_estimators": 15, "max_leaf_nodes": 40, "min_samples_leaf": 1}
    model = {"estimator": "sklearn.ensemble.ExtraTreesClassifier", "params": params, "seed": 0}
    result = train(load_config(toy_training(model=model)), tmp_path, progress=False)
    assert "compact.npz" in result.manifest.files and "model.onnx" not in result.manifest.files
    bundle = load_bundle(result.path)
    assert result.report["fast_path"]["equivalent"] is True
    assert result.report["fast_path"]["max_abs_diff"] <= 1e-6
    assert bundle.fast_path.compact.nodes["feature"].max() >= NEXT_IS_RIGHT  # some busier right children


def test_other_steps_are_left_to_onnx():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    scaled = ColumnTransformer([("num", MinMaxScaler(), [0, 1, 2])])
    assert not supports(Pipeline([("pre", scaled), ("rf", RandomForestClassifier(3))]).fit(X, y))
    standard = ColumnTransformer([("num", StandardScaler(), [0, 1, 2])])
    assert supports(Pipeline([("pre", standard), ("rf", RandomForestClassifier(3))]).fit(X, y))
    three = np.arange(60) % 3
    assert not supports(Pipeline([("pre", standard), ("rf", RandomForestClassifier(3))]).fit(X, three))
    strict = ColumnTransformer([("cat", OneHotEncoder(), [0])])  # unknown codes raise in sklearn
    codes = rng.integers(0, 3, (60, 3)).astype(float)
    assert not supports(Pipeline([("pre", strict), ("rf", RandomForestClassifier(3))]).fit(codes, y))
