"""Explain one row with AnchorTabular as a pure function of (instance, parameters, seed).

alibi samples with numpy's global RNG, seeded once when the sampler is built, and ``explain`` mutates
the explainer (instance label, lookups, the last bandit): two requests at once would corrupt each
other, and explaining the same row twice gives two anchors. So every explanation runs under one lock
and reseeds the global RNGs first. The lock also serialises the model calls of one process; scale
out with gunicorn workers or replicas, not threads.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from alibi.explainers.anchors import anchor_tabular

from glassbox.contract.schema import FeatureSchema
from glassbox.explain.batching import batched_draws
from glassbox.explain.params import ExplainParams


def bind_predictor(explainer: Any, predictor: Callable[[np.ndarray], np.ndarray]) -> None:
    """Give a fitted AnchorTabular its predictor without calling it.

    ``AnchorTabular.reset_predictor`` probes the predictor with a row of zeros to learn whether it
    returns labels or probabilities (alibi#514): with a remote model that is a network call at load
    time, which fails while the model is down. Our predictor always returns labels, the case in which
    alibi uses it unchanged, so we set what ``reset_predictor`` would set, minus the probe.
    """
    if getattr(explainer, "ohe", False):
        raise ValueError("one-hot encoded AnchorTabular is not supported: fit it on ordinal codes")
    explainer._predictor = predictor
    for sampler in explainer.samplers:
        sampler.predictor = predictor


class _RangeChoiceRandom:
    """``numpy.random`` as alibi's tabular sampler sees it, minus one needless cost.

    For every batch alibi draws base rows with ``np.random.choice(range(len(train)), k)``, and numpy
    first turns the 30,000-element ``range`` into an array: ~6 ms a call, 100-200 ms of each
    explanation. For a ``range`` from 0, with replacement and no ``p``, numpy's ``choice`` *is*
    ``randint(0, n, k)``: the same draws from the same global RNG, so the same anchors (tested).
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(np.random, name)

    @staticmethod
    def choice(a: Any, size: Any = None, replace: bool = True, p: Any = None) -> Any:
        if isinstance(a, range) and a.start == 0 and a.step == 1 and a.stop > 0 and replace and p is None:
            return np.random.randint(0, a.stop, size)
        return np.random.choice(a, size, replace, p)


class _NumpyForAlibi:
    """``numpy`` with ``random`` replaced by ``_RangeChoiceRandom``; everything else is numpy's."""

    random = _RangeChoiceRandom()

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@contextlib.contextmanager
def fast_range_choice() -> Iterator[None]:
    """Swap ``anchor_tabular``'s ``np`` for the duration of one explanation (held under the lock)."""
    original = anchor_tabular.np
    anchor_tabular.np = _NumpyForAlibi()
    try:
        yield
    finally:
        anchor_tabular.np = original


@dataclass
class Counted:
    """How much model work one explanation took."""

    calls: int = 0
    rows: int = 0


class CountingPredictor:
    """Wraps a label predictor and counts its calls and rows (read under the explain lock)."""

    def __init__(self, predictor: Callable[[np.ndarray], np.ndarray]):
        self.predictor = predictor
        self.count = Counted()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        self.count.calls += 1
        self.count.rows += len(X)
        return self.predictor(X)


class DeterministicExplainer:
    """AnchorTabular behind a lock, reseeded per explanation; returns JSON-safe explanation records."""

    def __init__(
        self,
        explainer: Any,
        predictor: Callable[[np.ndarray], np.ndarray],
        schema: FeatureSchema,
        class_names: list[str],
        model_version: str,
    ):
        self.explainer = explainer
        self.predictor = CountingPredictor(predictor)
        bind_predictor(explainer, self.predictor)
        self.schema = schema
        self.class_names = class_names
        self.model_version = model_version
        self._lock = threading.Lock()

    def explain(
        self, instance: np.ndarray, params: ExplainParams, seed: int, speedups: bool = True
    ) -> dict[str, Any]:
        """The explanation record of one encoded row (see docs/contracts.md, "Explainer response").

        ``speedups`` (the range-choice fix and batched draws) never change the result; ``False`` runs
        alibi's code unchanged, for tests and the benchmark baseline.
        """
        instance = np.asarray(instance, dtype=np.float64).reshape(-1)
        with self._lock, self._speedups(speedups):
            np.random.seed(seed)
            random.seed(seed)
            self.predictor.count = Counted()
            start = time.perf_counter()
            explanation = self.explainer.explain(instance, **params.model_dump())
            seconds = time.perf_counter() - start
            count = self.predictor.count
        data = explanation.data
        label = int(np.asarray(data["raw"]["prediction"]).reshape(-1)[0])
        precision = float(data["precision"])
        return {
            "methods": ["anchors"],
            "anchor": list(data["anchor"]),
            "precision": precision,
            "coverage": float(data["coverage"]),
            "threshold": params.threshold,
            "threshold_met": precision >= params.threshold,
            "instance": self.schema.decode(instance),
            "prediction": self.class_names[label],
            "params": params.model_dump(),
            "seed": seed,
            "model_version": self.model_version,
            "raw": json_safe(data["raw"]),
            "stats": {"seconds": seconds, "model_calls": count.calls, "model_rows": count.rows},
        }

    @contextlib.contextmanager
    def _speedups(self, on: bool) -> Iterator[None]:
        if not on:
            yield
            return
        with fast_range_choice(), batched_draws(self.explainer, self.predictor):
            yield


def json_safe(value: Any) -> Any:
    """The JSON-expressible part of alibi's output: arrays become lists, NaN/inf become None."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if _expressible(v)}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value if _expressible(v)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _expressible(value: Any) -> bool:
    return value is None or isinstance(
        value, (str, int, float, bool, list, tuple, dict, np.ndarray, np.generic)
    )
