"""The bundled Adult data, encoded exactly as alibi.datasets.fetch_adult encodes it."""

from __future__ import annotations

import hashlib
from unittest import mock

import alibi.datasets.default as alibi_datasets
import numpy as np
import pytest

from conftest import ADULT_CONFIG
from glassbox.contract.schema import decode_row
from glassbox.pipeline.config import load_config
from glassbox.pipeline.data import load_dataset, read_source
from glassbox.pipeline.split import split_rows

ADULT_SHA256 = "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"


@pytest.fixture(scope="module")
def config():
    return load_config(ADULT_CONFIG)


@pytest.fixture(scope="module")
def adult(config):
    return load_dataset(config)


@pytest.fixture(scope="module")
def alibi_adult(config):
    """alibi's own fetch_adult, its HTTP download answered with the bundled file (nothing leaves the box)."""
    response = mock.Mock(text=read_source(config.dataset.path).decode())
    with mock.patch.object(alibi_datasets.requests, "get", return_value=response) as get:
        bunch = alibi_datasets.fetch_adult()
    get.assert_called_once()
    return bunch


def test_bundled_file_is_the_published_adult_data(adult):
    assert adult.data_sha256 == ADULT_SHA256
    assert adult.X.shape == (32561, 12)
    assert adult.X.dtype == np.float64


def test_encoding_equals_alibi_fetch_adult(adult, alibi_adult):
    assert adult.feature_names == alibi_adult.feature_names
    assert adult.category_map == alibi_adult.category_map
    np.testing.assert_array_equal(adult.X, alibi_adult.data.astype(np.float64))
    np.testing.assert_array_equal(adult.y, alibi_adult.target)
    assert adult.class_names == alibi_adult.target_names


def test_unknown_values_stay_a_category(adult):
    workclass = adult.feature_names.index("Workclass")
    assert adult.category_map[workclass][0] == "?"
    assert (adult.X[:, workclass] == 0).sum() == 1836  # rows with '?' as Workclass in adult.data


def test_row_index_is_the_file_row(config, adult):
    lines = read_source(config.dataset.path).decode().splitlines()
    row = 1234
    assert adult.row_index[row] == row
    decoded = decode_row(adult.X[row], adult.feature_names, adult.category_map)
    assert lines[row].startswith(f"{decoded['Age']}, ")
    assert decoded["Sex"] in lines[row]


def test_split_is_the_alibi_example_split(adult):
    """The example permutes ``np.c_[data, target]``; we permute row positions: the same rows result."""
    from glassbox.pipeline.config import SplitConfig

    np.random.seed(0)
    permuted = np.random.permutation(np.c_[adult.X, adult.y])
    split = split_rows(adult, SplitConfig())
    np.testing.assert_array_equal(adult.X[split.train], permuted[:30000, :-1])
    np.testing.assert_array_equal(adult.X[split.test], permuted[30001:, :-1])
    np.testing.assert_array_equal(adult.y[split.test], permuted[30001:, -1])
    assert len(split.test) == 2560


def test_decode_row_accepts_the_manifest_string_keys(adult):
    as_json = {str(k): v for k, v in adult.category_map.items()}
    assert decode_row(adult.X[0], adult.feature_names, as_json) == decode_row(
        adult.X[0], adult.feature_names, adult.category_map
    )
    assert decode_row(adult.X[0], adult.feature_names, as_json)["Country"] == "United-States"


def test_data_hash_is_over_the_uncompressed_table(config):
    assert hashlib.sha256(read_source(config.dataset.path)).hexdigest() == ADULT_SHA256
