"""Train/test split and optional per-group resampling, as row positions into the ``Dataset``.

The default is Alibi's income recipe: ``np.random.seed(0)``, ``np.random.permutation``, the first
30,000 rows train and rows from 30,001 on test. ``np.random.permutation(n)`` draws the same order the
example's ``np.random.permutation(np.c_[data, target])`` applies to rows, so we keep row indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import resample

from glassbox.errors import ConfigError
from glassbox.pipeline.config import ResamplingConfig, SplitConfig
from glassbox.pipeline.data import Dataset


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # positions into Dataset.X (may repeat after upsampling)
    test: np.ndarray


def _train_count(split: SplitConfig, n_rows: int) -> int:
    size = split.train_size
    n_train = int(size * n_rows) if isinstance(size, float) and size < 1 else int(size)
    if n_train < 1 or n_train + split.gap >= n_rows:
        raise ConfigError(
            f"split.train_size: {size} leaves no test rows out of {n_rows} (gap {split.gap}); lower it"
        )
    return n_train


def strata(dataset: Dataset, attributes: list[str], rows: np.ndarray | None = None) -> np.ndarray:
    """One label per row combining the groups of ``attributes`` and the class, e.g. 'Female|Black|1'."""
    rows = np.arange(len(dataset.y)) if rows is None else rows
    parts = [dataset.group_labels(attr, rows).astype(str) for attr in attributes] + [
        dataset.y[rows].astype(str)
    ]
    return np.array(["|".join(values) for values in zip(*parts, strict=True)], dtype=object)


def split_rows(dataset: Dataset, split: SplitConfig, rows: np.ndarray | None = None) -> Split:
    """Split ``rows`` (positions into the dataset; default all, in file order) into train and test."""
    positions = np.arange(len(dataset.y)) if rows is None else np.asarray(rows)
    n_rows = len(positions)
    n_train = _train_count(split, n_rows)
    if split.balance_by:
        # Stratify on (groups x label) so each group keeps its share and base rate in both splits.
        try:
            train, test = train_test_split(
                positions,
                train_size=n_train,
                random_state=split.seed,
                stratify=strata(dataset, split.balance_by, positions),
            )
        except ValueError as exc:
            raise ConfigError(f"split.balance_by: cannot stratify by {split.balance_by}: {exc}") from None
        return Split(train=np.sort(train), test=np.sort(test))
    np.random.seed(split.seed)
    order = positions[np.random.permutation(n_rows)]
    return Split(train=order[:n_train], test=order[n_train + split.gap :])


def resample_train(dataset: Dataset, train: np.ndarray, config: ResamplingConfig) -> np.ndarray:
    """Equalise the (group x label) cells of the train rows by up- or down-sampling; test is untouched."""
    if config.strategy == "none":
        return train
    labels = strata(dataset, config.by, train)
    cells = {cell: train[labels == cell] for cell in np.unique(labels)}
    sizes = [len(rows) for rows in cells.values()]
    target = max(sizes) if config.strategy == "upsample" else min(sizes)
    resampled = [
        resample(rows, replace=config.strategy == "upsample", n_samples=target, random_state=config.seed + i)
        for i, rows in enumerate(cells.values())
    ]
    return np.concatenate(resampled)
