"""The ONNX fast path agrees with the sklearn reference on the whole test split."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ADULT_CONFIG
from glassbox.pipeline.artifacts import load_bundle
from glassbox.pipeline.config import load_config
from glassbox.pipeline.data import load_dataset
from glassbox.pipeline.split import split_rows


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
