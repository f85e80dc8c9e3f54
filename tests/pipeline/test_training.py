"""Training: deterministic, reported per group, gated on fairness, corrections recorded."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ADULT_CONFIG
from glassbox.pipeline.artifacts import LATEST, load_bundle
from glassbox.pipeline.config import load_config
from glassbox.pipeline.gate import breaches
from glassbox.pipeline.train import train

GROUP_COLUMNS = {
    "count",
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "precision",
    "accuracy",
}


def test_toy_training_is_deterministic(toy_training, tmp_path, adult_test_rows):
    config = load_config(toy_training())
    first = load_bundle(train(config, tmp_path / "a", progress=False).path)
    second = load_bundle(train(config, tmp_path / "b", progress=False).path)
    X = np.random.default_rng(1).uniform([18, 10, 0, 0], [70, 60, 3, 2], size=(200, 4)).round()
    np.testing.assert_array_equal(first.sklearn_predict_proba(X), second.sklearn_predict_proba(X))
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    assert first.manifest.metrics == second.manifest.metrics


@pytest.mark.slow
def test_adult_training_is_deterministic(trained_artifacts, tmp_path, adult_test_rows):
    """A second run of the default config predicts exactly what the session's trained model predicts."""
    again = load_bundle(train(load_config(ADULT_CONFIG), tmp_path, progress=False).path)
    reference = load_bundle(trained_artifacts)
    np.testing.assert_array_equal(
        again.sklearn_predict_proba(adult_test_rows), reference.sklearn_predict_proba(adult_test_rows)
    )
    assert again.manifest.metrics["accuracy"] == reference.manifest.metrics["accuracy"]


def test_adult_report_holds_the_per_group_tables(trained_artifacts):
    bundle = load_bundle(trained_artifacts)
    report = bundle.report()
    perf = report["performance"]
    assert 0.84 < perf["accuracy"] < 0.87  # the Alibi example reports 0.855
    assert perf["rows"] == 2560 and sum(map(sum, perf["confusion_matrix"])) == 2560
    assert {"precision", "recall", "roc_auc"} <= set(perf)
    sex = report["fairness"]["Sex"]
    assert set(sex["by_group"]) == {"Female", "Male"}
    assert all(set(row) >= GROUP_COLUMNS for row in sex["by_group"].values())
    assert sum(row["count"] for row in sex["by_group"].values()) == 2560
    assert set(report["fairness"]["Race"]["by_group"]) == {
        "Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"
    }  # fmt: skip
    # Female applicants are selected far less often than male ones: the gap the report must show.
    assert sex["demographic_parity_difference"]["value"] == pytest.approx(
        sex["by_group"]["Male"]["selection_rate"] - sex["by_group"]["Female"]["selection_rate"]
    )
    assert sex["demographic_parity_difference"]["lowest_group"] == "Female"
    assert (
        report["imbalance"]["Sex"]["train"]["Male"]["count"]
        > report["imbalance"]["Sex"]["train"]["Female"]["count"]
    )
    assert set(report["importance"]) == set(bundle.manifest.feature_names)
    card = (bundle.path / "model_card.md").read_text()
    for heading in (
        "## Performance",
        "## Fairness",
        "### Sex",
        "### Race",
        "## Data imbalance",
        "## Permutation",
    ):
        assert heading in card
    for plot in ("imbalance", "roc_by_group", "confusion_matrix", "importance"):
        assert (bundle.path / "plots" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_names_the_breached_metric_and_groups(trained_artifacts):
    report = load_bundle(trained_artifacts).report()
    tight = breaches(report, {"demographic_parity_difference": 0.01})
    assert {b.attribute for b in tight} == {"Sex", "Race"}
    sex = next(b for b in tight if b.attribute == "Sex")
    assert (
        "demographic_parity_difference for Sex" in str(sex)
        and "'Female'" in str(sex)
        and "'Male'" in str(sex)
    )
    assert breaches(report, {"demographic_parity_difference": 0.99, "equalized_odds_difference": 0.99}) == []


def test_gate_failure_keeps_the_version_but_not_latest(toy_training, tmp_path):
    model_dir = tmp_path / "model"
    passed = train(load_config(toy_training()), model_dir, version="v1", fairness_gate=True, progress=False)
    assert passed.promoted and (model_dir / LATEST).read_text().strip() == "v1"
    tight = load_config(toy_training(fairness={"gate": {"demographic_parity_difference": 0.05}}))
    failed = train(tight, model_dir, version="v2", fairness_gate=True, progress=False)
    assert [b.metric for b in failed.breaches] == ["demographic_parity_difference"]
    assert not failed.promoted and (model_dir / "v2" / "manifest.json").exists()
    assert (model_dir / LATEST).read_text().strip() == "v1"
    assert load_bundle(model_dir / "v2").manifest.metrics["fairness_gate_passed"] is False


def test_small_groups_are_reported_but_not_gated(toy_training, tmp_path):
    from glassbox.pipeline.data import load_dataset
    from glassbox.pipeline.split import split_rows

    config = load_config(toy_training())
    config.split.seed = 2  # 84 A and 66 B test rows (seed 0 happens to give 75 each)
    data = load_dataset(config)
    groups, counts = np.unique(
        data.group_labels("group", split_rows(data, config.split).test), return_counts=True
    )
    big, small = groups[np.argmax(counts)], groups[np.argmin(counts)]
    config.fairness.min_group_size = int(counts.max())  # only the bigger group is measured
    group = train(config, tmp_path, progress=False).report["fairness"]["group"]
    assert set(group["by_group"]) == {"A", "B"} and group["by_group"][small]["count"] == counts.min()
    assert group["groups_in_gaps"] == [big]
    assert group["demographic_parity_difference"]["value"] == 0


def test_balanced_split_and_upsampling(toy_training, tmp_path):
    config = load_config(
        toy_training(
            split={"seed": 0, "train_size": 0.75, "gap": 0, "balance_by": ["group"]},
            resampling={"strategy": "upsample", "by": ["group"]},
        )
    )
    report = train(config, tmp_path, progress=False).report
    train_cells = report["imbalance"]["group"]["train"]
    test_cells = report["imbalance"]["group"]["test"]
    # Upsampled: every (group, label) cell has the same number of training rows.
    assert train_cells["A"]["count"] == train_cells["B"]["count"]
    assert train_cells["A"]["positive_rate"] == train_cells["B"]["positive_rate"] == 0.5
    # Stratified: the test split keeps the data's group shares; nothing was resampled there.
    assert report["test_rows"] == 150 and test_cells["A"]["share"] == pytest.approx(0.6, abs=0.05)


def test_corrections_relabel_rows_add_rows_and_are_recorded(toy_training, tmp_path):
    config = load_config(toy_training())
    baseline = train(config, tmp_path / "base", progress=False)

    def corrections(data):
        y = data.y.copy()
        y[:5] = 1 - y[:5]
        X = np.vstack([data.X, data.X[:3]])
        row_index = np.concatenate([data.row_index, [-1, -2, -3]])
        summary = {"source": "export.jsonl", "sha256": "ab" * 32, "labels_corrected": 5, "rows_added": 3}
        from dataclasses import replace

        return replace(data, X=X, y=np.concatenate([y, y[:3]]), row_index=row_index), summary

    corrected = train(config, tmp_path / "fixed", corrections=corrections, progress=False)
    assert corrected.manifest.corrections["labels_corrected"] == 5
    assert corrected.report["train_rows"] == baseline.report["train_rows"] + 3  # added rows always train
    assert corrected.report["test_rows"] == baseline.report["test_rows"]  # the file's split is unchanged
    card = (corrected.path / "model_card.md").read_text()
    assert (
        "Labels corrected: 5" in card
        and "reviewed prediction rows added: 3" in card
        and "export.jsonl" in card
    )


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
        ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 20}),
    ],
)
def test_other_estimators_get_an_equivalent_fast_path(toy_training, tmp_path, estimator, params):
    config = load_config(toy_training(model={"estimator": estimator, "params": params, "seed": 0}))
    result = train(config, tmp_path, progress=False)
    assert result.report["fast_path"]["equivalent"] is True
    assert result.manifest.training_config["model"]["estimator"] == estimator
    assert "model.onnx" in result.manifest.files and "compact.npz" not in result.manifest.files


def test_an_existing_version_is_never_overwritten(toy_training, tmp_path):
    from glassbox.errors import Conflict

    config, model_dir = load_config(toy_training()), tmp_path / "model"
    first = train(config, model_dir, version="v1", progress=False)
    with pytest.raises(Conflict, match="v1 already exists"):
        train(config, model_dir, version="v1", progress=False)
    assert load_bundle(model_dir).manifest.artifact_sha256 == first.manifest.artifact_sha256
    assert {p.name for p in model_dir.iterdir()} == {"LATEST", "v1"}  # no staging left behind


@pytest.mark.parametrize("version", ["../escape", ".hidden", "a/b", ""])
def test_version_names_stay_inside_the_model_dir(toy_training, tmp_path, version):
    from glassbox.errors import ConfigError

    with pytest.raises(ConfigError, match="not a valid name"):
        train(load_config(toy_training()), tmp_path / "model", version=version or " ", progress=False)
    assert not (tmp_path / "escape").exists()
