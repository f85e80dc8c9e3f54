"""A model version on disk: the contract's manifest, hash verification before any unpickling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glassbox.errors import ArtifactIntegrityError, InvalidInput, NotFound
from glassbox.pipeline.artifacts import LATEST, load_bundle, resolve_version_dir


@pytest.fixture(scope="module")
def bundle(trained_artifacts):
    return load_bundle(trained_artifacts)


@pytest.fixture
def version_copy(trained_artifacts, tmp_path):
    """A private copy of the trained version, free to tamper with."""
    target = tmp_path / "model" / "v1"
    shutil.copytree(resolve_version_dir(trained_artifacts), target)
    (tmp_path / "model" / LATEST).write_text("v1\n")
    return target


def test_manifest_has_the_contract_fields(bundle):
    m = bundle.manifest
    assert m.name == "loanclassifier"
    assert m.feature_names[:3] == ["Age", "Workclass", "Education"] and len(m.feature_names) == 12
    assert m.feature_types["Age"] == "numeric" and m.feature_types["Sex"] == "categorical"
    assert m.category_map["7"] == ["Female", "Male"]
    assert m.class_names == ["<=50K", ">50K"] and m.positive_class == ">50K"
    assert m.protected_attributes == ["Sex", "Race"]
    assert m.data_sha256 == "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"
    assert {
        "preprocessor.dill",
        "model.dill",
        "explainer.dill",
        "compact.npz",
        "report.json",
        "model_card.md",
    } <= set(m.files)
    assert {f"plots/{p}.png" for p in ("imbalance", "roc_by_group", "confusion_matrix", "importance")} <= set(
        m.files
    )
    assert m.metrics["accuracy"] > 0.8
    assert {"scikit-learn", "alibi", "onnxruntime", "numba", "numpy"} <= set(m.library_versions)
    assert m.training_config["model"]["params"] == {"n_estimators": 50}
    assert len(m.artifact_sha256) == 64


def test_model_dir_and_version_dir_load_the_same(trained_artifacts, bundle):
    assert load_bundle(resolve_version_dir(trained_artifacts)).manifest == bundle.manifest


def test_tampered_model_is_refused_before_unpickling(version_copy, monkeypatch):
    import dill

    with open(version_copy / "model.dill", "ab") as handle:
        handle.write(b"\x00")
    loads = []
    monkeypatch.setattr(dill, "loads", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(dill, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(ArtifactIntegrityError, match=r"model\.dill: sha256 .* does not match") as info:
        load_bundle(version_copy.parent)
    assert info.value.status_code == 500
    assert loads == []  # nothing was unpickled


def test_file_swapped_after_loading_is_refused(version_copy):
    bundle = load_bundle(version_copy)
    shutil.copy(version_copy / "preprocessor.dill", version_copy / "explainer.dill")
    with pytest.raises(ArtifactIntegrityError, match="changed since the manifest"):
        bundle.load_explainer()


def test_edited_manifest_is_refused(version_copy):
    manifest = json.loads((version_copy / "manifest.json").read_text())
    manifest["files"]["model.dill"] = "0" * 64
    (version_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="artifact_sha256 does not match"):
        load_bundle(version_copy)


def test_missing_file_is_refused(version_copy):
    (version_copy / "compact.npz").unlink()
    with pytest.raises(ArtifactIntegrityError, match="listed in the manifest but missing"):
        load_bundle(version_copy)


def test_no_model_here(tmp_path):
    with pytest.raises(NotFound, match="no model at"):
        load_bundle(tmp_path)
    (tmp_path / LATEST).write_text("v9\n")
    with pytest.raises(NotFound, match="names version 'v9'"):
        load_bundle(tmp_path)


def test_bad_input_is_a_400(bundle):
    for bad in ([[1.0, 2.0]], [["a"] * 12], np.zeros((0, 12))):
        with pytest.raises(InvalidInput) as info:
            bundle.predict_proba(bad)
        assert info.value.status_code == 400


def test_explainer_explains_with_the_fast_path(bundle, adult_test_rows):
    explainer = bundle.load_explainer()
    explanation = explainer.explain(adult_test_rows[0], threshold=0.95)
    assert explanation.anchor and explanation.precision >= 0.9
    assert explanation.raw["prediction"][0] == bundle.predict(adult_test_rows[:1])[0]
    assert explainer.feature_names == bundle.manifest.feature_names
