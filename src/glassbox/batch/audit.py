"""The label audit's cross-validated fits and losses on Ray: one task per fold.

``glassbox.annotation.audit`` asks for ``(out-of-fold probabilities, per-row losses)`` through its
``out_of_fold`` hook; this is the Ray version of its default. Same folds (``fold_splits``), same
per-fold work (``fit_fold``: a seeded fit, the held-out rows' probabilities and losses), only run as
Ray tasks, so the records are the serial audit's (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassbox.annotation.audit import assemble_folds, fit_fold, fold_splits
from glassbox.pipeline.config import TrainingConfig
from glassbox.pipeline.data import Dataset


@dataclass(frozen=True)
class RayOutOfFold:
    """``out_of_fold`` for ``audit_labels``: the folds as Ray tasks (local Ray, or ``address``)."""

    address: str | None = None
    workers: int | None = None  # CPUs of the local Ray; None: this machine's cores

    def __call__(
        self, config: TrainingConfig, data: Dataset, folds: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        from glassbox.batch.runner import default_workers, init_ray

        splits = fold_splits(data, folds, seed)
        shutdown = init_ray(self.address, self.workers or default_workers())
        import ray

        try:
            X, y = ray.put(data.X), ray.put(data.y)  # shipped once, shared by every task
            task = ray.remote(num_cpus=1)(fit_fold)
            results = ray.get([task.remote(config, X, y, train, test) for train, test in splits])
        finally:
            shutdown()
        return assemble_folds(len(data.y), splits, results)
