"""Build the unfitted scikit-learn pipeline from the config: preprocessing + the configured classifier.

The preprocessing is the Alibi income example's ColumnTransformer: numeric columns median-imputed and
standard-scaled, categorical codes median-imputed and one-hot encoded (``handle_unknown="ignore"``, so
an unseen code scores like no category at all instead of failing).
"""

from __future__ import annotations

import importlib

from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from glassbox.errors import ConfigError
from glassbox.pipeline.config import TrainingConfig


def build_preprocessor(config: TrainingConfig) -> ColumnTransformer:
    kinds = list(config.features.values())
    numeric = [i for i, kind in enumerate(kinds) if kind == "numeric"]
    categorical = [i for i, kind in enumerate(kinds) if kind == "categorical"]
    numeric_steps = Pipeline([("imputer", SimpleImputer(strategy="median")), ("scaler", StandardScaler())])
    categorical_steps = Pipeline(
        [("imputer", SimpleImputer(strategy="median")), ("onehot", OneHotEncoder(handle_unknown="ignore"))]
    )
    transformers = []
    if numeric:
        transformers.append(("num", numeric_steps, numeric))
    if categorical:
        transformers.append(("cat", categorical_steps, categorical))
    return ColumnTransformer(transformers=transformers)


def build_classifier(config: TrainingConfig) -> ClassifierMixin:
    """Instantiate ``model.estimator`` with ``model.params``; refuse anything that is not a classifier."""
    path = config.model.estimator
    module_name, _, class_name = path.rpartition(".")
    if not module_name.startswith("sklearn."):
        # Only scikit-learn estimators: the fast path (skl2onnx) and the explainer rely on its API.
        raise ConfigError(
            f"model.estimator: {path!r} is not a scikit-learn estimator (sklearn.<module>.<Class>)"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ConfigError(f"model.estimator: cannot import {path!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, ClassifierMixin)):
        raise ConfigError(f"model.estimator: {path!r} is not a classifier")
    try:
        return cls(**config.model.params)
    except TypeError as exc:
        raise ConfigError(f"model.params: {exc}") from None


def build_pipeline(config: TrainingConfig) -> Pipeline:
    """The unfitted reference pipeline (also what ``audit-labels`` cross-validates)."""
    return Pipeline([("preprocessor", build_preprocessor(config)), ("classifier", build_classifier(config))])
