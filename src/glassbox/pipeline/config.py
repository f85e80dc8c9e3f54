"""The training config: one YAML file describes the dataset, the model, the split and the fairness gate.

Validated with pydantic so every mistake is reported as a ``ConfigError`` naming the field, before any
work starts. Relative dataset paths are resolved against the config file's directory, so a config and
its data can move together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from glassbox.errors import ConfigError

FeatureType = Literal["numeric", "categorical"]
GAP_METRICS = ("demographic_parity_difference", "equalized_odds_difference")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """Where the table is and how to read it into raw columns."""

    path: Path = Field(description="CSV file (plain or .gz); relative paths are relative to the config file.")
    header: bool = Field(True, description="The first line holds column names.")
    columns: list[str] | None = Field(None, description="Column names when the file has no header line.")
    delimiter: str = Field(",", description="Field separator; several characters use pandas' python engine.")
    missing_value: str = Field("?", description="Empty cells become this category (alibi's fillna('?')).")
    drop: list[str] = Field(default_factory=list, description="Columns read but not used as features.")
    attribution: str | None = Field(
        None, description="Source and licence of the data, shown in the model card."
    )
    regroup: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per column, raw value -> group name, applied before encoding."
    )


class TargetConfig(_Strict):
    column: str = Field(description="The label column.")
    positive: str = Field(description="The positive class's value; the other value is the negative class.")


class SplitConfig(_Strict):
    """Alibi's recipe: seeded permutation, the first ``train_size`` rows train, then skip ``gap`` rows."""

    seed: int = Field(0, description="np.random.seed before np.random.permutation of the rows.")
    train_size: int | float = Field(30000, description="Rows (int) or fraction (float < 1) for training.")
    gap: int = Field(1, ge=0, description="Rows skipped between train and test (the example's data[idx+1:]).")
    balance_by: list[str] = Field(
        default_factory=list,
        description="Protected attributes to stratify by (with the label) instead of a plain permutation.",
    )


class ResamplingConfig(_Strict):
    """Optional per-group resampling of the TRAIN rows only; the test split is never touched."""

    strategy: Literal["none", "upsample", "downsample"] = "none"
    by: list[str] = Field(
        default_factory=list, description="Attributes whose groups (x label) are equalised."
    )
    seed: int = 0


class ModelConfig(_Strict):
    estimator: str = Field(
        "sklearn.ensemble.RandomForestClassifier", description="Dotted path of a scikit-learn classifier."
    )
    params: dict[str, Any] = Field(default_factory=lambda: {"n_estimators": 50})
    seed: int | None = Field(0, description="np.random.seed right before fitting (the example's recipe).")


class ExplainerConfig(_Strict):
    seed: int = 1
    disc_perc: list[int] = Field(default_factory=lambda: [25, 50, 75])


class ExplanationsConfig(_Strict):
    """What reason codes and counterfactuals need to know about the decision (issue #13)."""

    adverse_class: str | None = Field(
        None, description="The adverse decision reason codes explain; default: the non-positive class."
    )
    immutable: list[str] = Field(
        default_factory=lambda: ["Race", "Sex", "Country"],
        description="Features a counterfactual never changes (those the config does not have are ignored).",
    )
    increase_only: list[str] = Field(
        default_factory=lambda: ["Age"],
        description="Numeric features a counterfactual may only increase (ignored when absent).",
    )


class EvaluationConfig(_Strict):
    permutation_repeats: int = Field(5, ge=1, le=50, description="Repeats of permutation importance.")
    seed: int = 0


class FairnessConfig(_Strict):
    """Thresholds on the gaps; ``glassbox train --fairness-gate`` fails when one is exceeded."""

    gate: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(GAP_METRICS, 0.25),
        description="metric -> largest allowed gap, applied to every protected attribute.",
    )
    min_group_size: int = Field(
        50,
        ge=1,
        description="Groups with fewer test rows are reported but left out of the gaps (too few to measure).",
    )

    @field_validator("gate")
    @classmethod
    def _known_metrics(cls, gate: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(gate) - set(GAP_METRICS))
        if unknown:
            raise ValueError(f"unknown gap metric(s) {unknown}; known: {list(GAP_METRICS)}")
        return gate


class TrainingConfig(_Strict):
    name: str = Field("model", pattern=r"^[a-z0-9][a-z0-9-]*$", description="Model name (DNS-1123 label).")
    dataset: DatasetConfig
    features: dict[str, FeatureType] = Field(description="Feature name -> type, in column order.")
    target: TargetConfig
    protected_attributes: list[str] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=SplitConfig)
    resampling: ResamplingConfig = Field(default_factory=ResamplingConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    explainer: ExplainerConfig = Field(default_factory=ExplainerConfig)
    explanations: ExplanationsConfig = Field(default_factory=ExplanationsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if not self.features:
            raise ValueError("features: at least one feature is needed")
        if self.target.column in self.features:
            raise ValueError(f"target column {self.target.column!r} is also listed as a feature")
        for attr in self.protected_attributes:
            if self.features.get(attr) != "categorical":
                raise ValueError(f"protected attribute {attr!r} must be a categorical feature")
        for section, names in (
            ("split.balance_by", self.split.balance_by),
            ("resampling.by", self.resampling.by),
        ):
            for attr in names:
                if self.features.get(attr) != "categorical":
                    raise ValueError(f"{section}: {attr!r} must be a categorical feature")
        explained = self.explanations
        if explained.adverse_class is not None and explained.adverse_class == "":
            raise ValueError("explanations.adverse_class: name a class or leave it out")
        if "explanations" in self.model_fields_set:  # names set by hand must exist; defaults may not
            for section in ("immutable", "increase_only"):
                if section not in explained.model_fields_set:
                    continue
                unknown = [name for name in getattr(explained, section) if name not in self.features]
                if unknown:
                    raise ValueError(f"explanations.{section}: {unknown} are not features")
            for name in explained.increase_only if "increase_only" in explained.model_fields_set else []:
                if self.features[name] != "numeric":
                    raise ValueError(f"explanations.increase_only: {name!r} must be a numeric feature")
        if self.resampling.strategy != "none" and not self.resampling.by:
            raise ValueError("resampling.by: name the attributes to resample by")
        return self

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)


def load_config(path: str | Path) -> TrainingConfig:
    """Read and validate a YAML config; ``ConfigError`` names the file and every bad field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config_from_dict(raw, base_dir=path.parent, source=str(path))


def config_from_dict(
    raw: dict[str, Any], base_dir: Path | None = None, source: str = "config"
) -> TrainingConfig:
    try:
        config = TrainingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
    if base_dir is not None and not config.dataset.path.is_absolute():
        config.dataset.path = (base_dir / config.dataset.path).resolve()
    return config
