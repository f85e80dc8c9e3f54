"""Counterfactuals of one row with DiCE (``dice-ml``, MIT), checked against the served model.

DiCE searches over the explainer's own copy of the forest (the compact fast path, ~0.1 ms a batch),
not over HTTP: its random method scores thousands of candidates. Its data interface is the training
rows AnchorTabular was fitted on (kept in the explainer artifact), labelled by the same forest, so
the features' ranges and categories are the model's. Features named immutable in the training config
(``explanations.immutable``; default Race, Sex, Country) are never varied, and the ``increase_only``
ones (default Age) may only grow (DiCE's ``permitted_range`` from the row's value up).

Every counterfactual DiCE returns is rounded as the training data is (whole numbers stay whole), then
re-checked: immutable features unchanged, increase-only ones not lower, and the DEPLOYED model (the
remote predictor) must give it the other class. Only those that pass are returned (``verified``);
when none does within the budget (``sample_size`` or ``max_iterations``), the answer says so.
Deterministic: DiCE draws from ``random`` and ``numpy.random``, reseeded per row under a lock.

dice-ml 0.12 is installed with ``--no-deps`` (see README): its declared dependencies pull xgboost,
lightgbm and a 361 MB NCCL wheel that only its xgboost backend imports; this module uses the sklearn
backend, which needs pandas, scikit-learn, raiutils, jsonschema and tqdm.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from glassbox.contract.explanations import CounterfactualOptions
from glassbox.contract.labels import argmax_like_sklearn
from glassbox.contract.schema import FeatureSchema
from glassbox.explain.attributions import show

Proba = Callable[[np.ndarray], np.ndarray]


class CounterfactualFinder:
    """DiCE over the local forest; ``find(row, options, seed, served)`` answers the record."""

    def __init__(
        self,
        train_rows: np.ndarray,
        local_proba: Proba,
        schema: FeatureSchema,
        class_names: Sequence[str],
        immutable: Sequence[str],
        increase_only: Sequence[str],
    ):
        import dice_ml  # heavy (pandas, sklearn): load() time only
        import pandas as pd

        self.pd = pd
        self.schema = schema
        self.names = list(schema.feature_names)
        self.class_names = list(class_names)
        self.local_proba = local_proba
        self.immutable = [n for n in immutable if n in self.names]
        self.increase_only = [n for n in increase_only if n in self.names and n not in self.immutable]
        self.numeric = [n for i, n in enumerate(self.names) if not schema.is_categorical(i)]
        train_rows = np.asarray(train_rows, dtype=np.float64)
        self.whole = {
            n: bool(np.all(train_rows[:, i] == np.round(train_rows[:, i])))
            for i, n in enumerate(self.names)
            if n in self.numeric
        }
        self.maximum = {n: float(train_rows[:, self.names.index(n)].max()) for n in self.numeric}
        frame = self.decode(train_rows)
        frame["_label"] = argmax_like_sklearn(local_proba(train_rows))
        data = dice_ml.Data(dataframe=frame, continuous_features=self.numeric, outcome_name="_label")
        model = dice_ml.Model(model=_FrameModel(self), backend="sklearn")
        self._dice = {method: dice_ml.Dice(data, model, method=method) for method in ("random", "genetic")}
        self._lock = threading.Lock()

    # --- encoding between alibi's codes and DiCE's frames -----------------------------------------

    def decode(self, rows: np.ndarray) -> Any:
        frame = self.pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=self.names)
        for j, categories in self.schema.categories.items():
            frame[self.names[j]] = [categories[int(code)] for code in frame[self.names[j]]]
        return frame

    def encode(self, frame: Any) -> np.ndarray:
        rows = np.empty((len(frame), len(self.names)))
        for j, name in enumerate(self.names):
            if self.schema.is_categorical(j):
                codes = self.schema.category_codes[j]
                rows[:, j] = [codes[str(value)] for value in frame[name]]
            else:
                rows[:, j] = frame[name].astype(np.float64).to_numpy()
        return rows

    # --- the search -----------------------------------------------------------------------------

    def find(
        self, row: np.ndarray, options: CounterfactualOptions, seed: int, served: Proba
    ) -> dict[str, Any]:
        """The counterfactuals record of one encoded row; ``served`` is the deployed model's predict_proba."""
        row = np.asarray(row, dtype=np.float64).reshape(-1)
        query = self.decode(row[None])
        original = int(argmax_like_sklearn(self.local_proba(row[None]))[0])
        permitted = {n: [float(row[self.names.index(n)]), self.maximum[n]] for n in self.increase_only}
        permitted = {n: r for n, r in permitted.items() if r[0] < r[1]}  # already at the top: it stays
        frozen = [n for n in self.increase_only if n not in permitted]
        to_vary = [n for n in self.names if n not in self.immutable and n not in frozen]
        arguments: dict[str, Any] = {
            "total_CFs": options.k,
            "desired_class": "opposite",
            "features_to_vary": to_vary,
            "permitted_range": permitted or None,
            "verbose": False,
        }
        if options.method == "random":
            arguments.update(sample_size=options.sample_size, random_seed=seed)
        else:
            arguments.update(maxiterations=options.max_iterations)
        with self._lock, _quiet_dice(), _seeded(seed):
            try:
                result = self._dice[options.method].generate_counterfactuals(query, **arguments)
                frame = result.cf_examples_list[0].final_cfs_df
            except Exception as exc:  # DiCE raises (or returns nothing) when its search comes up empty
                if "No counterfactuals found" not in str(exc) and "counterfactual" not in str(exc).lower():
                    raise
                frame = None
        candidates = self._candidates(frame, row)
        return self._verified(row, candidates, original, served, options)

    def _candidates(self, frame: Any, row: np.ndarray) -> np.ndarray:
        if frame is None or len(frame) == 0:
            return np.empty((0, len(self.names)))
        rows = self.encode(frame[self.names])
        for j, name in enumerate(self.names):
            if self.whole.get(name):
                rows[:, j] = np.round(rows[:, j])
        keep = []
        seen: set[bytes] = set()
        for candidate in rows:
            key = candidate.tobytes()
            if key in seen or np.array_equal(candidate, row):
                continue
            seen.add(key)
            keep.append(candidate)
        return np.array(keep).reshape(-1, len(self.names))

    def _verified(
        self,
        row: np.ndarray,
        candidates: np.ndarray,
        original: int,
        served: Proba,
        options: CounterfactualOptions,
    ) -> dict[str, Any]:
        instance = self.schema.decode(row)
        items, disagreed = [], 0
        allowed = [self._respects_constraints(row, c) for c in candidates]
        checked = candidates[np.array(allowed, dtype=bool)] if len(candidates) else candidates
        constrained = len(candidates) - len(checked)
        probabilities = served(checked) if len(checked) else np.empty((0, len(self.class_names)))
        for candidate, p in zip(checked, probabilities, strict=True):
            label = int(argmax_like_sklearn(p[None])[0])
            if label == original:
                disagreed += 1
                continue
            changed = self.schema.decode(candidate)
            changes = [
                {"feature": n, "from": instance[n], "to": changed[n]}
                for n in self.names
                if changed[n] != instance[n]
            ]
            prediction = self.class_names[label]
            had = _and_list(
                [f"{c['feature']} been {show(c['to'])} instead of {show(c['from'])}" for c in changes]
            )
            items.append(
                {
                    "changes": changes,
                    "prediction": prediction,
                    "probability": float(p[label]),
                    "verified": True,
                    "sentence": f"Had {had}, the decision would have been {prediction} ({p[label]:.2f}).",
                }
            )
        items.sort(key=lambda item: (len(item["changes"]), -item["probability"]))
        items = items[: options.k]
        budget = (
            f"sample_size {options.sample_size}"
            if options.method == "random"
            else f"max_iterations {options.max_iterations}"
        )
        if items:
            message = (
                f"{len(items)} counterfactual(s) found by DiCE ({options.method}, {budget}), "
                "each verified with the served model"
            )
        else:
            message = f"no counterfactual found within the budget (DiCE {options.method}, {budget})"
        if disagreed:
            message += f"; {disagreed} candidate(s) dropped: the served model kept the decision"
        if constrained:
            message += f"; {constrained} candidate(s) dropped: they changed an immutable feature"
        return {
            "found": bool(items),
            "message": message,
            "method": options.method,
            "immutable": self.immutable,
            "increase_only": self.increase_only,
            "items": items,
        }

    def _respects_constraints(self, row: np.ndarray, candidate: np.ndarray) -> bool:
        for name in self.immutable:
            j = self.names.index(name)
            if candidate[j] != row[j]:
                return False
        return all(candidate[self.names.index(n)] >= row[self.names.index(n)] for n in self.increase_only)


def _and_list(parts: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


class _FrameModel:
    """The local forest as DiCE's sklearn backend calls it: ``predict_proba(DataFrame)``."""

    def __init__(self, finder: CounterfactualFinder):
        self.finder = finder

    def predict_proba(self, frame: Any) -> np.ndarray:
        return self.finder.local_proba(self.finder.encode(frame[self.finder.names]))

    def predict(self, frame: Any) -> np.ndarray:
        return argmax_like_sklearn(self.predict_proba(frame))


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """DiCE's genetic method draws from the global RNGs: seed them, then restore them."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextlib.contextmanager
def _quiet_dice() -> Iterator[None]:
    """DiCE wraps its loop over query rows in a tqdm bar on stderr: not in a server's log."""
    from dice_ml.explainer_interfaces import explainer_base

    original = explainer_base.tqdm
    explainer_base.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        explainer_base.tqdm = original
