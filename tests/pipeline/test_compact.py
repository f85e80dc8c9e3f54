"""The compact forest is exact for every input it accepts, NaN included, and refuses what sklearn refuses;
``compact.npz`` carries a format version that loading checks."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from glassbox.errors import ArtifactIntegrityError, InvalidInput
from glassbox.pipeline import fastpath
from glassbox.pipeline.artifacts import MANIFEST, files_digest, load_bundle, resolve_version_dir, sha256_file
from glassbox.pipeline.compact import (
    ARRAYS,
    FORMAT_VERSION,
    MISSING_IS_NEXT,
    OPTIONAL_ARRAYS,
    CompactPipeline,
    supports,
)

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Skipping features without any observed values"
    ),  # column 5, on purpose
    pytest.mark.filterwarnings("ignore:overflow encountered in cast"),  # sklearn casting 1e300 to float32
]
N = 800
CODES = [0.0, 1.0, 2.0, 3.0]  # categorical columns 3 and 4 hold these codes (and NaN in column 3)


def nan_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three numeric and two categorical columns; NaN in columns 0, 1 and 3 carries signal both ways."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)]
        + [rng.integers(0, 4, N).astype(float) for _ in range(2)]
    )
    y = (X[:, 0] + X[:, 1] + (X[:, 3] == 2) + rng.normal(scale=0.5, size=N) > 0.5).astype(int)
    for column, share, label in ((0, 0.25, 1), (1, 0.2, 0), (3, 0.15, 1)):
        missing = rng.random(N) < share
        X[missing, column] = np.nan
        y[missing & (rng.random(N) < 0.7)] = label  # missing means something: splits learn a side
    return X, y


def preprocessing(**kwargs) -> ColumnTransformer:
    """No imputer: NaN in columns 0 and 1 reaches the trees; NaN in column 3 is a one-hot category."""
    return ColumnTransformer(
        [("num", StandardScaler(), [0, 1, 2]), ("cat", OneHotEncoder(handle_unknown="ignore"), [3, 4])],
        sparse_threshold=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def fitted() -> dict[str, Pipeline]:
    X, y = nan_data()
    clean_X, clean_y = nan_data(1)
    clean = ~np.isnan(clean_X).any(axis=1)
    partly_imputed = ColumnTransformer(
        [
            ("imputed", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [0, 5]),
            ("raw", StandardScaler(), slice(1, 3)),  # a slice, a boolean mask: sklearn's other selections
            ("cat", OneHotEncoder(handle_unknown="ignore"), [False, False, False, True, True, False]),
        ],
        sparse_threshold=0,
    )
    with_empty = np.column_stack([X, np.full(N, np.nan)])  # column 5: nothing observed, the imputer drops it
    pipelines = {
        "forest": Pipeline([("pre", preprocessing()), ("rf", RandomForestClassifier(25, random_state=0))]),
        "extra": Pipeline([("pre", preprocessing()), ("et", ExtraTreesClassifier(25, random_state=0))]),
        "partly imputed": Pipeline(
            [("pre", partly_imputed), ("rf", RandomForestClassifier(15, random_state=0))]
        ),
        "trained without NaN": Pipeline(
            [("pre", preprocessing()), ("rf", RandomForestClassifier(15, random_state=0))]
        ),
    }
    for name, pipeline in pipelines.items():
        if name == "trained without NaN":
            pipeline.fit(clean_X[clean], clean_y[clean])
        else:
            pipeline.fit(with_empty if name == "partly imputed" else X, y)
    return pipelines


@pytest.fixture(scope="module")
def compacts(fitted) -> dict[str, CompactPipeline]:
    return {name: compiled(pipeline) for name, pipeline in fitted.items()}


def compiled(pipeline: Pipeline) -> CompactPipeline:
    assert supports(pipeline)
    n_features = pipeline.steps[0][1].n_features_in_
    return CompactPipeline.from_bytes(CompactPipeline.from_sklearn(pipeline, n_features).to_bytes())


def assert_agrees(pipeline: Pipeline, compact: CompactPipeline, X: np.ndarray) -> None:
    """Both give the same probabilities and argmax, or both refuse the rows."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    try:
        reference = pipeline.predict_proba(X)
    except ValueError as exc:  # sklearn refuses infinity, a float32 overflow, NaN in sparse input
        with pytest.raises(InvalidInput):
            compact.predict_proba(X)
        assert "NaN" in str(exc) or "infinity" in str(exc)
        return
    fast = compact.predict_proba(X)
    assert np.abs(fast - reference).max() <= 1e-6
    np.testing.assert_array_equal(fast.argmax(axis=1), reference.argmax(axis=1))


def test_trees_trained_on_nan_route_missing_values_both_ways(fitted):
    for name in ("forest", "extra"):
        forest = fitted[name].steps[-1][1]
        routes = set()
        for estimator in forest.estimators_:
            tree = estimator.tree_
            split_on_nan_columns = (tree.children_left >= 0) & np.isin(tree.feature, [0, 1])
            routes |= set(tree.missing_go_to_left[split_on_nan_columns].tolist())
        assert routes == {0, 1}, name
        flags = compiled(fitted[name]).nodes["feature"]
        splits = flags[flags >= 0]
        assert 0 < (splits & MISSING_IS_NEXT).astype(bool).sum() < len(splits)


@pytest.mark.parametrize("name", ["forest", "extra", "partly imputed", "trained without NaN"])
def test_exact_on_the_training_rows_and_with_every_column_missing(fitted, name):
    pipeline = fitted[name]
    X, _ = nan_data()
    if name == "partly imputed":
        X = np.column_stack([X, np.full(N, np.nan)])
    compact = compiled(pipeline)
    assert_agrees(pipeline, compact, X)
    assert_agrees(pipeline, compact, np.full((3, X.shape[1]), np.nan))
    assert np.isnan(X).any(axis=1).sum() > 100


def test_the_missing_value_flag_is_what_makes_it_exact(fitted):
    """Sending every NaN to one side, as the walk did before, is off by up to 1.0: the test can fail."""
    pipeline, X = fitted["forest"], np.ascontiguousarray(nan_data()[0])
    compact = compiled(pipeline)
    nodes = compact.nodes.copy()
    nodes["feature"] = np.where(nodes["feature"] >= 0, nodes["feature"] & ~MISSING_IS_NEXT, nodes["feature"])
    nodes["feature"] |= np.where(nodes["feature"] >= 0, MISSING_IS_NEXT, 0)  # NaN always to the next node
    wrong = dataclasses.replace(compact, nodes=nodes).predict_proba(X)
    assert np.abs(wrong - pipeline.predict_proba(X)).max() > 0.3
    assert np.abs(compact.predict_proba(X) - pipeline.predict_proba(X)).max() <= 1e-6


def cell(column: int) -> st.SearchStrategy[float]:
    """Training values (exactly on and around the split points), any float, NaN, unknown codes."""
    observed = sorted({float(v) for v in nan_data()[0][:, column] if not np.isnan(v)})
    values = [st.just(np.nan), st.sampled_from(observed)]
    if column < 3:
        values.append(st.floats(-4, 4))
    else:
        values.append(st.sampled_from([*CODES, 7.0, -1.0]))
    return st.one_of(values)


ROW = st.tuples(*(cell(c) for c in range(5))).map(list)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=12))
def test_hypothesis_rows_with_nan_agree_with_sklearn(fitted, compacts, rows):
    for name in ("forest", "extra", "trained without NaN"):
        assert_agrees(fitted[name], compacts[name], np.array(rows))


NOT_NUMBERS = st.sampled_from([np.inf, -np.inf, 1e300, -1e300, np.nan])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(ROW, min_size=1, max_size=4),
    where=st.tuples(st.integers(0, 3), st.integers(0, 4)),
    bad=NOT_NUMBERS,
)
def test_what_sklearn_refuses_is_refused(fitted, compacts, rows, where, bad):
    X = np.array(rows)
    X[min(where[0], len(X) - 1), where[1]] = bad
    assert_agrees(fitted["forest"], compacts["forest"], X)


def test_nan_reaching_sparse_trees_is_refused_as_sklearn_does():
    X, y = nan_data()
    clean = ~np.isnan(X).any(axis=1)
    sparse = ColumnTransformer(
        [("num", StandardScaler(), [0, 1, 2]), ("cat", OneHotEncoder(handle_unknown="ignore"), [3, 4])],
        sparse_threshold=1.0,
    )
    pipeline = Pipeline([("pre", sparse), ("rf", RandomForestClassifier(10, random_state=0))]).fit(
        X[clean], y[clean]
    )
    assert pipeline.steps[0][1].sparse_output_
    compact = compiled(pipeline)
    assert compact.nan_ok is False
    assert_agrees(pipeline, compact, X[clean][:50])
    row = X[clean][:2].copy()
    row[1, 0] = np.nan
    with pytest.raises(InvalidInput, match="row 1, feature 0: a missing value") as info:
        compact.predict_proba(row)
    assert info.value.status_code == 400
    assert_agrees(pipeline, compact, row)
    row[1, 0], row[1, 3] = 0.0, np.nan  # NaN in a one-hot column is an unknown category, not refused
    assert_agrees(pipeline, compact, row)


def test_other_pipelines_are_left_to_onnx(fitted):
    X, y = nan_data()
    three_steps = Pipeline(
        [("pre", preprocessing()), ("imp", SimpleImputer()), ("rf", RandomForestClassifier(3))]
    )
    assert not supports(three_steps.fit(X, y))
    passthrough = ColumnTransformer(
        [("num", StandardScaler(), [0])], remainder="passthrough", sparse_threshold=0
    )
    assert not supports(Pipeline([("pre", passthrough), ("rf", RandomForestClassifier(3))]).fit(X, y))
    with pytest.raises(Exception, match="takes 5 features, not 6"):
        CompactPipeline.from_sklearn(fitted["forest"], 6)


# --- the format version ----------------------------------------------------------------------------


def rewritten(data: bytes, **changes: object) -> bytes:
    """``compact.npz`` bytes with arrays replaced (a value) or removed (None)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        stored = {key: arrays[key] for key in arrays.files}
    for key, value in changes.items():
        if value is None:
            stored.pop(key)
        else:
            stored[key] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez(buffer, **stored)
    return buffer.getvalue()


def test_the_file_carries_its_format_version(fitted):
    data = CompactPipeline.from_sklearn(fitted["forest"], 5).to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        assert int(arrays["format_version"]) == FORMAT_VERSION == 2
        assert set(arrays.files) == {*ARRAYS, *OPTIONAL_ARRAYS, "format_version", "nan_ok"}


@pytest.mark.parametrize("version", [3, 1, 0, "2"])
def test_another_version_is_refused_naming_file_found_and_expected(fitted, version):
    data = rewritten(CompactPipeline.from_sklearn(fitted["forest"], 5).to_bytes(), format_version=version)
    found = repr(np.asarray(version)) if isinstance(version, str) else str(version)
    with pytest.raises(
        ArtifactIntegrityError, match=re.escape(f"compact.npz: format version {found}, expected 2")
    ):
        fastpath.load({fastpath.COMPACT_FILE: data}, 5)


def test_a_file_from_before_versions_is_read_as_version_1_only_when_every_column_is_imputed(
    fitted, trained_artifacts, adult_test_rows
):
    # What `glassbox train` wrote before: every column imputed, so NaN never reaches a tree.
    bundle = load_bundle(trained_artifacts)
    current = CompactPipeline.from_sklearn(bundle.pipeline, 12).to_bytes()
    legacy = CompactPipeline.from_bytes(rewritten(current, format_version=None, nan_ok=None))
    X = adult_test_rows.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan
    np.testing.assert_array_equal(
        legacy.predict_proba(X), CompactPipeline.from_bytes(current).predict_proba(X)
    )
    assert np.abs(legacy.predict_proba(X) - bundle.pipeline.predict_proba(X)).max() <= 1e-6
    # A file without the key whose columns are not imputed would route NaN as version 1 did: refused.
    unimputed = rewritten(CompactPipeline.from_sklearn(fitted["forest"], 5).to_bytes(), format_version=None)
    with pytest.raises(
        ArtifactIntegrityError, match=r"compact\.npz: format version 1 .* columns \[0, 1, 2, 3, 4\]"
    ):
        CompactPipeline.from_bytes(unimputed)


def resign(version_dir) -> None:
    """Rewrite the manifest's hashes after a deliberate edit, as a file from another release would be."""
    manifest = json.loads((version_dir / MANIFEST).read_text())
    manifest["files"]["compact.npz"] = sha256_file(version_dir / "compact.npz")
    manifest["artifact_sha256"] = files_digest(manifest["files"])
    (version_dir / MANIFEST).write_text(json.dumps(manifest))


def test_a_bundle_with_another_version_is_refused_and_one_without_loads(
    trained_artifacts, tmp_path, adult_test_rows
):
    source = resolve_version_dir(trained_artifacts)
    assert "compact.npz" in json.loads((source / MANIFEST).read_text())["files"]
    data = CompactPipeline.from_sklearn(load_bundle(source).pipeline, 12).to_bytes()
    for version, expect in ((7, "refused"), (None, "loads"), (FORMAT_VERSION, "loads")):
        target = tmp_path / f"v{version}"
        shutil.copytree(source, target)
        (target / "compact.npz").write_bytes(rewritten(data, format_version=version))
        resign(target)
        bundle = load_bundle(target)
        if expect == "refused":
            with pytest.raises(ArtifactIntegrityError, match=r"compact\.npz: format version 7, expected 2"):
                bundle.predict_proba(adult_test_rows[:3])
        else:
            reference = bundle.sklearn_predict_proba(adult_test_rows)
            assert np.abs(bundle.predict_proba(adult_test_rows) - reference).max() <= 1e-6


def test_garbage_is_an_integrity_error_not_a_crash():
    with pytest.raises(ArtifactIntegrityError, match=r"compact\.npz: not a compact forest file"):
        CompactPipeline.from_bytes(b"not a zip")


def test_serving_loads_and_runs_it_without_importing_sklearn(fitted, tmp_path):
    path = tmp_path / "compact.npz"
    path.write_bytes(CompactPipeline.from_sklearn(fitted["forest"], 5).to_bytes())
    X = np.ascontiguousarray(nan_data()[0][:20])
    np.save(tmp_path / "rows.npy", X)
    np.save(tmp_path / "expected.npy", fitted["forest"].predict_proba(X))
    code = f"""
import sys, pathlib, numpy as np
from glassbox.pipeline.compact import CompactPipeline
c = CompactPipeline.from_bytes(pathlib.Path({str(path)!r}).read_bytes())
p = c.predict_proba(np.load({str(tmp_path / "rows.npy")!r}))
assert np.abs(p - np.load({str(tmp_path / "expected.npy")!r})).max() <= 1e-6
assert not [m for m in sys.modules if m.split(".")[0] == "sklearn"], "sklearn was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
