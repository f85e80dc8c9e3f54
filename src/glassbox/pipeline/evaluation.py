"""Evaluate a trained model on the test split: performance, per-group fairness, imbalance, importance.

Metric code is scikit-learn's and fairlearn's (``MetricFrame``, ``demographic_parity_difference``,
``equalized_odds_difference``); this module only arranges their results into ``report.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from glassbox.errors import ConfigError
from glassbox.pipeline.data import Dataset

GROUP_METRICS: dict[str, Callable[..., float]] = {
    "count": count,
    "selection_rate": selection_rate,
    "true_positive_rate": true_positive_rate,
    "false_positive_rate": false_positive_rate,
    "precision": lambda y, p: precision_score(y, p, zero_division=0),
    "accuracy": accuracy_score,
}


def _jsonable(value: Any) -> Any:
    """Floats for numpy scalars, None for NaN (a group with no positives has no TPR)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    return value


def performance(y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray) -> dict[str, Any]:
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "roc_auc": roc_auc_score(y_true, y_score) if len(np.unique(y_true)) == 2 else float("nan"),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
        "rows": len(y_true),
    }


def fairness(
    y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray, groups: np.ndarray, min_group_size: int = 1
) -> dict[str, Any]:
    """Per-group table and the gaps for one protected attribute.

    Every group is in the table; only groups with at least ``min_group_size`` rows enter the gaps, since
    a rate measured on a handful of rows (Adult's test split has 21 'Other' rows) is mostly noise."""
    frame = MetricFrame(metrics=GROUP_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_group = frame.by_group
    table = {
        str(group): {metric: by_group.loc[group, metric] for metric in GROUP_METRICS}
        for group in by_group.index
    }
    for row in table.values():
        row["count"] = int(row["count"])
    measured = [group for group, row in table.items() if row["count"] >= min_group_size]
    if not measured:
        raise ConfigError(
            f"fairness.min_group_size: no group has {min_group_size} test rows; lower fairness.min_group_size"
        )
    in_gaps = np.isin(groups, measured)
    roc: dict[str, Any] = {}
    for group in table:
        mask = groups == group
        if len(np.unique(y_true[mask])) == 2:
            fpr, tpr, _ = roc_curve(y_true[mask], y_score[mask])
            roc[group] = {"auc": roc_auc_score(y_true[mask], y_score[mask]), "fpr": fpr, "tpr": tpr}
        table[group]["roc_auc"] = roc[group]["auc"] if group in roc else float("nan")
    rates = by_group.loc[measured, ["selection_rate", "true_positive_rate", "false_positive_rate"]]
    tpr_gap = rates["true_positive_rate"].max() - rates["true_positive_rate"].min()
    fpr_gap = rates["false_positive_rate"].max() - rates["false_positive_rate"].min()
    eo_rate = "true_positive_rate" if tpr_gap >= fpr_gap else "false_positive_rate"
    return {
        "by_group": table,
        "demographic_parity_difference": {
            "value": demographic_parity_difference(
                y_true[in_gaps], y_pred[in_gaps], sensitive_features=groups[in_gaps]
            ),
            "lowest_group": str(rates["selection_rate"].idxmin()),
            "highest_group": str(rates["selection_rate"].idxmax()),
            "rate": "selection_rate",
        },
        "equalized_odds_difference": {
            "value": equalized_odds_difference(
                y_true[in_gaps], y_pred[in_gaps], sensitive_features=groups[in_gaps]
            ),
            "lowest_group": str(rates[eo_rate].idxmin()),
            "highest_group": str(rates[eo_rate].idxmax()),
            "rate": eo_rate,
        },
        "groups_in_gaps": measured,
        "roc": roc,
    }


def imbalance(y: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, Any]]:
    """Rows and base rate of the positive class per group (of the rows given)."""
    names, counts = np.unique(groups, return_counts=True)
    return {
        str(name): {
            "count": int(n),
            "share": n / len(groups),
            "positive_rate": float(y[groups == name].mean()),
        }
        for name, n in zip(names, counts, strict=True)
    }


class _Predictor:
    """Adapts a predict function to permutation_importance, which only accepts objects with ``fit``
    (it never calls it: scoring goes through our scorer, so the fast path does the work)."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray]):
        self.predict = predict

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Predictor:
        raise NotImplementedError("already fitted")


def importance(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    feature_names: Sequence[str],
    repeats: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Permutation importance (drop in accuracy) of each raw feature, scored through ``predict``."""

    def score(model: _Predictor, X_: np.ndarray, y_: np.ndarray) -> float:
        return accuracy_score(y_, model.predict(X_))

    result = permutation_importance(
        _Predictor(predict), X, y, scoring=score, n_repeats=repeats, random_state=seed
    )
    return {
        name: {"mean": result.importances_mean[i], "std": result.importances_std[i]}
        for i, name in enumerate(feature_names)
    }


def evaluate(
    data: Dataset,
    train: np.ndarray,
    test: np.ndarray,
    predict_proba: Callable[[np.ndarray], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    protected: Sequence[str],
    repeats: int,
    seed: int,
    min_group_size: int = 1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report (JSON-safe: performance, fairness per attribute, imbalance, importance) and the ROC
    curves per attribute and group (for the plots; too long for the report)."""
    X, y = data.X[test], data.y[test]
    score = predict_proba(X)[:, 1]
    y_pred = predict(X)
    report: dict[str, Any] = {
        "test_rows": len(test),
        "train_rows": len(train),
        "performance": performance(y, y_pred, score),
        "fairness": {},
        "imbalance": {},
        "importance": importance(predict, X, y, data.feature_names, repeats, seed),
    }
    curves: dict[str, Any] = {}
    for attribute in protected:
        groups = data.group_labels(attribute, test)
        report["fairness"][attribute] = fairness(y, y_pred, score, groups, min_group_size)
        curves[attribute] = report["fairness"][attribute].pop("roc")
        report["imbalance"][attribute] = {
            "train": imbalance(data.y[train], data.group_labels(attribute, train)),
            "test": imbalance(y, groups),
        }
    return _jsonable(report), curves
