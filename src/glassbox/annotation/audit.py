"""Training-label audit: rank training rows by how surprising their label is to an honest model.

Out-of-fold probabilities (each fold's model scores only the rows it did not see) mean no row is
scored by a model that saw it, so a high cross-entropy loss points at a row whose label disagrees
with everything similar to it: a candidate label error (the idea behind confident learning). The top
K go to the queue as ``training-audit`` records carrying their loss, to be reviewed highest-loss
first. Each fold's forest is seeded as training seeds it (``np.random.seed(model.seed)`` before the
fit), so an audit gives the same records every time, and wherever its folds run
(``glassbox.batch.audit`` runs them on Ray).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from glassbox.contract.labels import Certainty
from glassbox.contract.records import intake_record, timestamp
from glassbox.contract.schema import FeatureSchema
from glassbox.pipeline.config import TrainingConfig
from glassbox.pipeline.data import Dataset, load_dataset
from glassbox.pipeline.estimator import build_pipeline
from glassbox.pipeline.split import split_rows


@dataclass
class AuditResult:
    records: list[dict[str, Any]]
    losses: np.ndarray  # every audited row's loss, in dataset order
    rows_audited: int


def fold_splits(data: Dataset, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) of each fold."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(data.X, data.y))


def fit_fold(
    config: TrainingConfig, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One fold: fit on ``train``; the held-out rows' probabilities and losses."""
    model = build_pipeline(config)
    if config.model.seed is not None:
        np.random.seed(config.model.seed)  # as training does: the forest draws from np.random
    model.fit(X[train], y[train])
    probabilities = model.predict_proba(X[test])
    return probabilities, cross_entropy(probabilities, y[test])


def assemble_folds(
    rows: int, splits: list[tuple[np.ndarray, np.ndarray]], results: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Every fold's held-out probabilities and losses put back in dataset order."""
    probabilities = np.empty((rows, results[0][0].shape[1]), dtype=np.float64)
    losses = np.empty(rows, dtype=np.float64)
    for (_, test), (fold_probabilities, fold_losses) in zip(splits, results, strict=True):
        probabilities[test], losses[test] = fold_probabilities, fold_losses
    return probabilities, losses


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row ``-log p(given label)``, clipped so a confident miss is large but finite."""
    return -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0))


# (config, data, folds, seed) -> (out-of-fold probabilities, per-row losses), both in dataset order.
# The default runs in this process; ``glassbox.batch.audit`` runs the folds on Ray with the same result.
OutOfFold = Callable[[TrainingConfig, Dataset, int, int], tuple[np.ndarray, np.ndarray]]


def out_of_fold_losses(
    config: TrainingConfig, data: Dataset, folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    splits = fold_splits(data, folds, seed)
    results = [fit_fold(config, data.X, data.y, train, test) for train, test in splits]
    return assemble_folds(len(data.y), splits, results)


def audit_labels(
    config: TrainingConfig,
    top_k: int,
    *,
    folds: int = 5,
    seed: int = 0,
    version: str = "",
    max_rows: int | None = None,
    data: Dataset | None = None,
    out_of_fold: OutOfFold = out_of_fold_losses,
) -> AuditResult:
    """The ``top_k`` highest-loss rows as intake records (ids ``audit:<version>:<row index>``).

    ``version`` defaults to the first 12 hex digits of the data's SHA-256, so auditing the same data
    twice sends the same ids and the queue keeps one record each. Only the training split's rows are
    audited; ``max_rows`` keeps the first of them (quick runs and tests).
    """
    data = data or load_dataset(config)
    # Only the training split's rows: the test rows' labels never reach the model.
    rows = np.unique(split_rows(data, config.split).train)
    data = _subset(data, rows[:max_rows] if max_rows is not None else rows)
    version = version or f"data-{data.data_sha256[:12]}"
    probabilities, losses = out_of_fold(config, data, folds, seed)
    order = np.argsort(-losses, kind="stable")[:top_k]
    certainty = Certainty.of(probabilities[order])
    schema = FeatureSchema.of(data.feature_names, data.category_map, data.class_names)
    created = timestamp()
    records = []
    for k, i in enumerate(order.tolist()):
        row_index = int(data.row_index[i])
        records.append(
            intake_record(
                record_id=f"audit:{version}:{row_index}",
                source="training-audit",
                schema=schema,
                row=data.X[i].tolist(),
                probabilities=probabilities[i].tolist(),
                certainty=certainty,
                index=k,
                model_name=config.name,
                model_version=version,
                request_id=f"audit:{version}",
                created=created,
                metadata={
                    "loss": float(losses[i]),
                    "row_index": row_index,
                    "true_label": data.class_names[int(data.y[i])],
                    "folds": folds,
                },
            )
        )
    return AuditResult(records, losses, len(data.y))


def _subset(data: Dataset, positions: np.ndarray) -> Dataset:
    return replace(data, X=data.X[positions], y=data.y[positions], row_index=data.row_index[positions])
