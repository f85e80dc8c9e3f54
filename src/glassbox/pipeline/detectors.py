"""Drift references and the outlier scorer, fitted at training and stored as plain arrays.

``glassbox train`` fits them on the training split and writes ``detectors.npz`` into the version
(hashed in the manifest like every artifact; read with ``allow_pickle=False``, so nothing runs code).
The monitor (``glassbox.monitor``) reads them through ``Bundle.detectors()``; scoring needs numpy only.

- Numeric features: the training values themselves (sorted), the reference of a two-sample KS test.
- Categorical features: training counts per category of the category map (chi-squared goodness of fit).
- Class mix: the model's predicted classes on the held-out test split. Not the training labels, nor
  predictions on the training rows: a fully grown forest reproduces its training labels, and on
  unseen rows of the same population it predicts the positive class less often than the labels say,
  so either of those would flag healthy traffic.
- Outliers: squared Mahalanobis distance in the pipeline's preprocessed space (numeric columns
  standardised with the fitted pipeline's scaler, categoricals one-hot over the category map), with
  scikit-learn's Ledoit-Wolf shrunk covariance (stored as location + precision matrix). The threshold
  is a quantile (default 99th percentile) of the training rows' distances; a row's score is its
  distance divided by the threshold, so 1 is the boundary whatever the model.
- Out of range: a numeric value beyond the training minimum or maximum is an outlier too, scored
  ``1 + excess / std``. The distance alone would miss it on this data: Capital Gain's long tail
  (z up to 13) sets the 99th percentile so high that an Age of 160 (z = 9) stays below it, and the
  forest has never seen such a value (its trees answer as for the largest one they know).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DETECTORS = "detectors.npz"
OUTLIER_QUANTILE = 0.99
RARE_CATEGORY_SHARE = 0.005  # a category seen in fewer than 0.5 % of training rows is "rare"
UNUSUAL_SHARE = 0.15  # a feature carrying at least this share of a row's distance is named


@dataclass(frozen=True)
class Unusual:
    """Why one row scored as it did: features by their share of the distance, and rare categories."""

    shares: dict[str, float]  # feature -> share of the squared distance (>= UNUSUAL_SHARE, largest first)
    rare_categories: dict[str, int]  # feature -> code of a category seen in < RARE_CATEGORY_SHARE of rows
    out_of_range: dict[str, float]  # feature -> value beyond the training minimum or maximum


@dataclass(frozen=True)
class Detectors:
    """The fitted references of one model version (arrays only)."""

    feature_names: tuple[str, ...]
    numeric_columns: np.ndarray  # (k,) column indices
    numeric_reference: tuple[np.ndarray, ...]  # sorted training values per numeric column
    categorical_columns: np.ndarray  # (m,) column indices
    category_counts: tuple[np.ndarray, ...]  # training counts per category code, per categorical column
    class_counts: np.ndarray  # predicted classes on the held-out test split
    scale_mean: np.ndarray  # (k,) the pipeline's StandardScaler, numeric columns in numeric_columns order
    scale_std: np.ndarray
    location: np.ndarray  # (d,) Ledoit-Wolf location in the preprocessed space
    precision: np.ndarray  # (d, d) Ledoit-Wolf precision
    threshold: float  # squared distance at OUTLIER_QUANTILE of the training rows
    quantile: float
    block: np.ndarray  # (d,) which feature column each preprocessed dimension comes from

    # --- the preprocessed space ----------------------------------------------------------------

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows in alibi's encoding -> standardised numerics followed by one-hot categoricals."""
        X = np.asarray(X, dtype=np.float64)
        parts = [(X[:, self.numeric_columns] - self.scale_mean) / self.scale_std]
        for column, counts in zip(self.categorical_columns, self.category_counts, strict=True):
            codes = X[:, column].astype(np.intp)
            onehot = np.zeros((len(X), len(counts)))
            inside = (codes >= 0) & (codes < len(counts))
            onehot[np.flatnonzero(inside), codes[inside]] = 1.0
            parts.append(onehot)
        return np.hstack(parts)

    def distances(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared Mahalanobis distance per row, and each dimension's term of it (rows x dims)."""
        centred = self.transform(X) - self.location
        terms = centred * (centred @ self.precision)  # row sums are the squared distances
        return terms.sum(axis=1), terms

    def range_excess(self, X: np.ndarray) -> np.ndarray:
        """(rows, numeric columns): how far beyond the training range, in standard deviations (0 inside)."""
        values = np.asarray(X, dtype=np.float64)[:, self.numeric_columns]
        low = np.array([r[0] for r in self.numeric_reference])
        high = np.array([r[-1] for r in self.numeric_reference])
        return (np.clip(low - values, 0, None) + np.clip(values - high, 0, None)) / self.scale_std

    def assess(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(score, squared distance, distance terms, range excess) per row; score > 1 is an outlier."""
        distances, terms = self.distances(X)
        excess = self.range_excess(X)
        beyond = excess.max(axis=1, initial=0.0)
        scores = np.where(
            beyond > 0, np.maximum(distances / self.threshold, 1.0 + beyond), distances / self.threshold
        )
        return scores, distances, terms, excess

    def score(self, X: np.ndarray) -> np.ndarray:
        """Outlier score per row (> 1 is an outlier)."""
        return self.assess(X)[0]

    def explain(self, X: np.ndarray, terms: np.ndarray, excess: np.ndarray | None = None) -> list[Unusual]:
        """For each row: the features that made it far from the training data."""
        width = len(self.feature_names)
        per_feature = np.zeros((len(X), width))
        np.add.at(per_feature.T, self.block, terms.T)  # sum each feature's dimensions
        positive = np.clip(per_feature, 0.0, None)  # cross terms may be negative: shares of what adds
        shares = positive / np.maximum(positive.sum(axis=1, keepdims=True), 1e-300)
        rare = {
            int(column): counts / max(counts.sum(), 1.0)
            for column, counts in zip(self.categorical_columns, self.category_counts, strict=True)
        }
        explained = []
        for i, row in enumerate(np.asarray(X, dtype=np.float64)):
            order = np.argsort(-shares[i])
            named = {
                self.feature_names[j]: round(float(shares[i, j]), 4)
                for j in order
                if shares[i, j] >= UNUSUAL_SHARE
            }
            rare_here = {}
            for column, frequency in rare.items():
                code = int(row[column])
                if 0 <= code < len(frequency) and frequency[code] < RARE_CATEGORY_SHARE:
                    rare_here[self.feature_names[column]] = code
            beyond = {}
            if excess is not None:
                for k in np.flatnonzero(excess[i] > 0):
                    column = int(self.numeric_columns[k])
                    beyond[self.feature_names[column]] = float(row[column])
            explained.append(Unusual(named, rare_here, beyond))
        return explained

    # --- storage ---------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "feature_names": np.array(self.feature_names, dtype=np.str_),
            "numeric_columns": self.numeric_columns,
            "categorical_columns": self.categorical_columns,
            "class_counts": self.class_counts,
            "scale_mean": self.scale_mean,
            "scale_std": self.scale_std,
            "location": self.location,
            "precision": self.precision,
            "threshold": np.array(self.threshold),
            "quantile": np.array(self.quantile),
            "block": self.block,
        }
        for k, values in enumerate(self.numeric_reference):
            arrays[f"numeric_reference_{k}"] = values
        for k, counts in enumerate(self.category_counts):
            arrays[f"category_counts_{k}"] = counts
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, content: bytes) -> Detectors:
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            a = {name: npz[name] for name in npz.files}
        numeric = a["numeric_columns"].astype(np.intp)
        categorical = a["categorical_columns"].astype(np.intp)
        return cls(
            feature_names=tuple(str(n) for n in a["feature_names"]),
            numeric_columns=numeric,
            numeric_reference=tuple(a[f"numeric_reference_{k}"] for k in range(len(numeric))),
            categorical_columns=categorical,
            category_counts=tuple(a[f"category_counts_{k}"] for k in range(len(categorical))),
            class_counts=a["class_counts"],
            scale_mean=a["scale_mean"],
            scale_std=a["scale_std"],
            location=a["location"],
            precision=a["precision"],
            threshold=float(a["threshold"]),
            quantile=float(a["quantile"]),
            block=a["block"].astype(np.intp),
        )


def fit(
    X_train: np.ndarray,
    feature_names: Sequence[str],
    category_map: Mapping[int, Sequence[str]],
    class_names: Sequence[str],
    predicted_heldout: np.ndarray,
    preprocessor: Any,
    quantile: float = OUTLIER_QUANTILE,
) -> Detectors:
    """Fit every reference on the training rows ``X_train`` (alibi's encoding).

    ``predicted_heldout``: class indices the model predicts on the held-out test split (class mix).
    ``preprocessor``: the fitted pipeline's ColumnTransformer; its scaler's mean and scale are reused
    so that the outlier space is the model's own preprocessed space.
    """
    from sklearn.covariance import LedoitWolf  # training only: the monitor never imports sklearn

    X_train = np.asarray(X_train, dtype=np.float64)
    width = len(feature_names)
    categorical = np.array(sorted(int(j) for j in category_map), dtype=np.intp)
    numeric = np.array([j for j in range(width) if j not in set(categorical.tolist())], dtype=np.intp)
    mean, std = _scaler(preprocessor, X_train, numeric)
    counts = tuple(
        np.bincount(X_train[:, j].astype(np.intp), minlength=len(category_map[int(j)])).astype(np.float64)
        for j in categorical
    )
    block = np.concatenate(
        [numeric] + [np.full(len(c), j, dtype=np.intp) for j, c in zip(categorical, counts, strict=True)]
    ).astype(np.intp)
    unfitted = Detectors(
        feature_names=tuple(feature_names),
        numeric_columns=numeric,
        numeric_reference=tuple(np.sort(X_train[:, j]) for j in numeric),
        categorical_columns=categorical,
        category_counts=counts,
        class_counts=np.bincount(
            np.asarray(predicted_heldout, dtype=np.intp), minlength=len(class_names)
        ).astype(np.float64),
        scale_mean=mean,
        scale_std=std,
        location=np.zeros(len(block)),
        precision=np.eye(len(block)),
        threshold=1.0,
        quantile=quantile,
        block=block,
    )
    Z = unfitted.transform(X_train)
    covariance = LedoitWolf().fit(Z)
    fitted = Detectors(
        **{
            **unfitted.__dict__,
            "location": covariance.location_,
            "precision": covariance.precision_,
        }
    )
    training_distances = fitted.distances(X_train)[0]
    return Detectors(**{**fitted.__dict__, "threshold": float(np.quantile(training_distances, quantile))})


def _scaler(preprocessor: Any, X: np.ndarray, numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fitted pipeline's StandardScaler over the numeric columns; the data's own when there is none."""
    try:
        scaler = preprocessor.named_transformers_["num"].named_steps["scaler"]
        mean, scale = np.asarray(scaler.mean_, dtype=np.float64), np.asarray(scaler.scale_, dtype=np.float64)
        if len(mean) == len(numeric):
            return mean, scale
    except (AttributeError, KeyError, TypeError):
        pass
    std = X[:, numeric].std(axis=0)
    return X[:, numeric].mean(axis=0), np.where(std > 0, std, 1.0)
