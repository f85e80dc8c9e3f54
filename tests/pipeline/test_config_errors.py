"""Every config or data mistake is a ConfigError (HTTP 400) that names the problem, before training."""

from __future__ import annotations

import pytest
import yaml

from glassbox.errors import ConfigError
from glassbox.pipeline.config import load_config
from glassbox.pipeline.data import load_dataset
from glassbox.pipeline.estimator import build_classifier


def edit(config_path, change):
    raw = yaml.safe_load(config_path.read_text())
    change(raw)
    config_path.write_text(yaml.safe_dump(raw))
    return config_path


def error_of(config_path) -> str:
    with pytest.raises(ConfigError) as info:
        load_dataset(load_config(config_path))
    assert info.value.status_code == 400
    return info.value.message


def test_missing_column_is_named(toy_training):
    path = edit(toy_training(), lambda raw: raw["features"].update({"income": "numeric"}))
    message = error_of(path)
    assert "['income']" in message and "not in" in message


def test_unknown_feature_type_is_named(toy_training):
    path = edit(toy_training(), lambda raw: raw["features"].update({"colour": "ordinal"}))
    message = error_of(path)
    assert "features.colour" in message and "'numeric' or 'categorical'" in message


def test_target_with_one_class(toy_training):
    path = toy_training()
    csv = path.parent / "toy.csv"
    csv.write_text(csv.read_text().replace(",no\n", ",yes\n"))
    message = error_of(path)
    assert "single class" in message and "approved" in message


def test_target_with_three_classes(toy_training):
    path = toy_training()
    csv = path.parent / "toy.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",maybe"
    csv.write_text("\n".join(lines) + "\n")
    assert "3 classes" in error_of(path)


def test_positive_class_that_never_occurs(toy_training):
    path = edit(toy_training(), lambda raw: raw["target"].update({"positive": "Yes"}))
    assert "never occurs" in error_of(path)


def test_empty_csv(toy_training):
    path = toy_training()
    (path.parent / "toy.csv").write_text("")
    assert "is empty" in error_of(path)


def test_header_only_csv(toy_training):
    path = toy_training()
    (path.parent / "toy.csv").write_text("age,hours,colour,group,approved\n")
    assert "no data rows" in error_of(path)


def test_missing_data_file(toy_training):
    path = toy_training()
    (path.parent / "toy.csv").unlink()
    assert "file not found" in error_of(path)


def test_text_in_a_numeric_column(toy_training):
    path = toy_training()
    csv = path.parent / "toy.csv"
    lines = csv.read_text().splitlines()
    lines[3] = "old," + lines[3].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    message = error_of(path)
    assert "features.age" in message and "'old'" in message and "row 2" in message


def test_unknown_section_and_bad_values_are_all_listed(toy_training):
    def change(raw):
        raw["modle"] = {}
        raw["split"]["gap"] = -1

    message = error_of(edit(toy_training(), change))
    assert "modle" in message and "split.gap" in message


def test_protected_attribute_must_be_categorical(toy_training):
    path = edit(toy_training(), lambda raw: raw.update({"protected_attributes": ["age"]}))
    assert "protected attribute 'age' must be a categorical feature" in error_of(path)


def test_unknown_gap_metric(toy_training):
    path = edit(toy_training(), lambda raw: raw["fairness"]["gate"].update({"disparate_impact": 0.8}))
    assert "unknown gap metric" in error_of(path)


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("estimator", "params", "expected"),
    [
        ("os.system", {}, "not a scikit-learn estimator"),
        ("sklearn.ensemble.NoSuchForest", {}, "cannot import"),
        ("sklearn.linear_model.LinearRegression", {}, "not a classifier"),
        ("sklearn.ensemble.RandomForestClassifier", {"n_trees": 5}, "model.params"),
    ],
)
def test_estimator_errors(toy_training, estimator, params, expected):
    config = load_config(
        edit(toy_training(), lambda raw: raw["model"].update(estimator=estimator, params=params))
    )
    with pytest.raises(ConfigError, match=expected):
        build_classifier(config)


def test_explanations_section_names_unknown_features_and_classes(toy_training, tmp_path):
    """Issue #13: immutable/increase-only features must exist (defaults absent from a config are
    ignored); an adverse class that is not a class stops training before any work."""
    from glassbox.pipeline.train import train

    assert load_config(toy_training()).explanations.immutable == ["Race", "Sex", "Country"]  # ignored here
    path = edit(toy_training(), lambda raw: raw.update({"explanations": {"immutable": ["group", "Race"]}}))
    with pytest.raises(ConfigError, match=r"explanations\.immutable: \['Race'\] are not features"):
        load_config(path)
    path = edit(toy_training(), lambda raw: raw.update({"explanations": {"increase_only": ["colour"]}}))
    with pytest.raises(ConfigError, match=r"explanations\.increase_only: 'colour' must be a numeric feature"):
        load_config(path)
    path = edit(toy_training(), lambda raw: raw.update({"explanations": {"adverse_class": "rejected"}}))
    with pytest.raises(ConfigError, match=r"explanations\.adverse_class: 'rejected' is not a class"):
        train(load_config(path), tmp_path / "models", progress=False)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
