"""One model call per bandit step instead of one per candidate anchor.

alibi's ``AnchorBaseBeam.draw_samples`` asks the sampler for a batch for every candidate anchor in
one list comprehension, and only then reads the results. Each sampler call perturbs rows (the only
use of the RNG) and then calls the predictor. With a remote model each call is an HTTP round trip
(~5-10 ms), and about half of them can be saved: ``BatchingSampler`` lets alibi's own sampler
perturb as usual, records the rows it would have sent, and answers with a deferred result; the
first time draw_samples reads any result, all recorded rows go to the model in one call and every
result is completed. The RNG sees the same draws in the same order, so the explanation is the same
(tested against alibi's unmodified path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class _DeferredSample:
    """alibi's ``[covered_true, covered_false, labels, data, coverage, position]``, labels pending."""

    def __init__(self, batch: BatchingSampler, raw: np.ndarray, rest: list):
        self._batch, self.raw, self._rest = batch, raw, rest
        self._items: list | None = None

    def resolve(self, matches: np.ndarray, n_covered_ex: int) -> None:
        # What TabularSampler.__call__ does with the labels (alibi 0.9.6, compute_labels=True).
        covered_true = self.raw[matches, :][:n_covered_ex]
        covered_false = self.raw[np.logical_not(matches), :][:n_covered_ex]
        self._items = [covered_true, covered_false, matches.astype(int), *self._rest]

    def _resolved(self) -> list:
        if self._items is None:
            self._batch.flush()
        assert self._items is not None
        return self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._resolved())

    def __getitem__(self, index: Any) -> Any:
        return self._resolved()[index]

    def __len__(self) -> int:
        return len(self._resolved())


class BatchingSampler:
    """Stands in for alibi's ``TabularSampler``; everything but ``__call__`` is the sampler's own."""

    def __init__(self, sampler: Any, predictor: Callable[[np.ndarray], np.ndarray]):
        self._sampler = sampler
        self._predictor = predictor
        self._pending: list[_DeferredSample] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sampler, name)

    def __call__(self, anchor: tuple, num_samples: int, compute_labels: bool = True) -> Any:
        if not compute_labels:
            return self._sampler(anchor, num_samples, compute_labels=False)
        recorded: list[np.ndarray] = []

        def record(X: np.ndarray) -> np.ndarray:
            recorded.append(X)
            return np.zeros(len(X), dtype=int)  # a stand-in; the real labels come with the flush

        original, self._sampler.predictor = self._sampler.predictor, record
        try:
            _, _, _, *rest = self._sampler(anchor, num_samples, compute_labels=True)
        finally:
            self._sampler.predictor = original
        deferred = _DeferredSample(self, recorded[0], rest)
        self._pending.append(deferred)
        return deferred

    def flush(self) -> None:
        """Label every pending batch with one predictor call."""
        pending, self._pending = self._pending, []
        labels = self._predictor(np.concatenate([p.raw for p in pending]))
        matches = labels == self._sampler.instance_label
        start = 0
        for p in pending:
            p.resolve(matches[start : start + len(p.raw)], self._sampler.n_covered_ex)
            start += len(p.raw)


@contextlib.contextmanager
def batched_draws(explainer: Any, predictor: Callable[[np.ndarray], np.ndarray]) -> Iterator[None]:
    """Give ``explainer`` (a fitted AnchorTabular) batching samplers for one ``explain`` call."""
    originals = explainer.samplers
    explainer.samplers = [BatchingSampler(sampler, predictor) for sampler in originals]
    try:
        yield
    finally:
        explainer.samplers = originals
