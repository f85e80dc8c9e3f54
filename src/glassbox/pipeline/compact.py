"""The fitted preprocessing + forest, laid out for prediction and run as one compiled numba loop.

Why not onnxruntime for forests: the default recipe grows 50 unbounded trees (~480k nodes), which
onnxruntime keeps in ~20 MB. Between two requests the forest drops out of the CPU caches (the L3 is
shared with everything else on the host), and every step down a tree then waits on a miss: 100 rows
took 3.3-3.6 ms instead of 0.6 ms warm, one row 0.2 ms of mostly onnxruntime's own cold start. Here
a node is 12 bytes, ``(feature, value, far)``, and a leaf keeps the positive-class probability in
``value``. Nodes are in depth-first order taking the child more training rows went to first, so that
child is the next node and the usual path runs through consecutive memory; ``far`` is the other
child, and a flag in ``feature`` says which side the next node is. The same forest is 5.8 MB, and
the cold numbers become about 1.0 ms and 0.1 ms (benchmarks/fastpath.py).

Exactness, step by step as sklearn computes it: impute NaN with the fitted statistics, scale as
``(x - mean) / scale`` in float64, one-hot by equality with the fitted categories (an unknown code
gives all zeros, as ``handle_unknown="ignore"`` does), cast to float32, then walk the trees. sklearn
compares a float32 feature ``x`` with a float64 threshold ``t``; ``x <= t`` holds exactly when
``x <= t32``, ``t32`` being the largest float32 not above ``t``, which is the threshold kept here.
Leaf probabilities are float32 summed in float64: within 1e-7 of sklearn.

Only what ``estimator.build_preprocessor`` builds is compiled (ColumnTransformer of SimpleImputer,
StandardScaler, OneHotEncoder) in front of a two-class RandomForest/ExtraTrees classifier; anything
else keeps the ONNX fast path (``supports``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numba
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NODE = np.dtype([("feature", np.int32), ("value", np.float32), ("far", np.int32)])
LEAF = -1  # ``feature`` of a leaf
NEXT_IS_RIGHT = 1 << 30  # set in ``feature`` when the next node is the right child (x > threshold)
SCALED, ONE_HOT = 0, 1  # kinds of output column
ARRAYS = ("impute", "kind", "source", "a", "b", "nodes", "roots")


class Unsupported(Exception):
    """The pipeline has a step this module does not compile; the ONNX fast path takes it."""


def supports(pipeline: Pipeline) -> bool:
    try:
        _columns(pipeline.steps[0][1])
        _check_forest(pipeline.steps[-1][1])
    except Unsupported:
        return False
    return len(pipeline.steps) == 2


@dataclass(frozen=True)
class CompactPipeline:
    """The fitted pipeline as plain arrays (saved without pickle) and the loops that run them."""

    impute: np.ndarray  # float64 per input column: the value that replaces NaN (NaN: none)
    kind: np.ndarray  # int8 per preprocessed column: SCALED or ONE_HOT
    source: np.ndarray  # int32 per preprocessed column: the input column it comes from
    a: np.ndarray  # float64: the mean (SCALED) or the category (ONE_HOT)
    b: np.ndarray  # float64: the scale (SCALED)
    nodes: np.ndarray  # NODE records of every tree, one tree after the other
    roots: np.ndarray  # int32: each tree's root in ``nodes``

    @property
    def n_features(self) -> int:
        return len(self.impute)

    @classmethod
    def from_sklearn(cls, pipeline: Pipeline, n_features: int) -> CompactPipeline:
        if not supports(pipeline):
            raise Unsupported(f"cannot compile {pipeline!r}")
        impute = np.full(n_features, np.nan)
        kind, source, a, b = _columns(pipeline.steps[0][1], impute)
        parts, roots, offset = [], [], 0
        for estimator in pipeline.steps[-1][1].estimators_:
            parts.append(_tree_nodes(estimator.tree_, offset))
            roots.append(offset)
            offset += len(parts[-1])
        return cls(impute, kind, source, a, b, np.concatenate(parts), np.array(roots, np.int32))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities (rows, classes) for C-contiguous float64 rows of ``n_features`` raw values."""
        Z = _preprocess(rows, self.impute, self.kind, self.source, self.a, self.b)
        p1 = _walk(Z, self.nodes, self.roots)
        return np.column_stack([1.0 - p1, p1])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: getattr(self, name) for name in ARRAYS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactPipeline:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:  # plain arrays: nothing runs
            fields = {name: arrays[name] for name in ARRAYS}
        if fields["nodes"].dtype != NODE or fields["roots"].dtype != np.int32:
            raise ValueError(f"unexpected array types: {fields['nodes'].dtype}, {fields['roots'].dtype}")
        return cls(**fields)


# --- reading the fitted sklearn objects ------------------------------------------------------------


def _columns(preprocessor: object, impute: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The preprocessed columns in ColumnTransformer's output order; fills ``impute`` per input."""
    if not isinstance(preprocessor, ColumnTransformer) or not hasattr(preprocessor, "transformers_"):
        raise Unsupported("the first step is not a fitted ColumnTransformer")
    kind, source, a, b = [], [], [], []
    for _name, steps, columns in preprocessor.transformers_:
        if steps == "drop":
            continue
        parts = steps.steps if isinstance(steps, Pipeline) else [("", steps)]
        objects = [step for _, step in parts]
        if objects and isinstance(objects[0], SimpleImputer):
            imputer = objects.pop(0)
            if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
                raise Unsupported("SimpleImputer with missing_values other than NaN")
            if getattr(imputer, "add_indicator", False):
                raise Unsupported("SimpleImputer(add_indicator=True)")
            if impute is not None:
                impute[columns] = imputer.statistics_
        if len(objects) != 1:
            raise Unsupported(f"transformer steps {objects!r}")
        step = objects[0]
        if isinstance(step, StandardScaler):
            for j, column in enumerate(columns):
                kind.append(SCALED)
                source.append(column)
                a.append(step.mean_[j] if step.with_mean else 0.0)
                b.append(step.scale_[j] if step.with_std else 1.0)
        elif isinstance(step, OneHotEncoder):
            if step.drop is not None or getattr(step, "_infrequent_enabled", False):
                raise Unsupported("OneHotEncoder with drop or infrequent categories")
            if step.handle_unknown != "ignore":  # an unknown code must score as all zeros, not raise
                raise Unsupported(f"OneHotEncoder(handle_unknown={step.handle_unknown!r})")
            for column, categories in zip(columns, step.categories_, strict=True):
                for category in categories:
                    kind.append(ONE_HOT)
                    source.append(column)
                    a.append(float(category))
                    b.append(1.0)
        else:
            raise Unsupported(f"transformer {step!r}")
    return (
        np.array(kind, np.int8),
        np.array(source, np.int32),
        np.array(a, np.float64),
        np.array(b, np.float64),
    )


def _check_forest(forest: object) -> None:
    if not isinstance(forest, RandomForestClassifier | ExtraTreesClassifier) or forest.n_outputs_ != 1:
        raise Unsupported("the classifier is not a single-output RandomForest/ExtraTrees classifier")
    if forest.n_classes_ != 2:
        raise Unsupported(f"{forest.n_classes_} classes; the compact forest holds two")


def _tree_nodes(tree, offset: int) -> np.ndarray:
    """One sklearn ``tree_`` as NODE records, the busier child of each node right after it."""
    left, right, rows = tree.children_left, tree.children_right, tree.weighted_n_node_samples
    next_is_left = rows[np.maximum(left, 0)] >= rows[np.maximum(right, 0)]
    order, stack = [], [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if left[node] >= 0:  # push the far child first: the busier one is visited next
            stack += [int(right[node]), int(left[node])][:: 1 if next_is_left[node] else -1]
    order = np.array(order, np.int64)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    is_leaf, next_left = left[order] < 0, next_is_left[order]
    far = np.where(next_left, right[order], left[order])
    threshold = tree.threshold[order]
    below = threshold.astype(np.float32)
    below = np.where(below.astype(np.float64) > threshold, np.nextafter(below, np.float32(-np.inf)), below)
    counts = tree.value[order, 0, :]
    positive = counts[:, 1] / np.where(counts.sum(axis=1) == 0, 1.0, counts.sum(axis=1))
    nodes = np.empty(len(order), NODE)
    nodes["feature"] = np.where(is_leaf, LEAF, tree.feature[order] | np.where(next_left, 0, NEXT_IS_RIGHT))
    nodes["value"] = np.where(is_leaf, positive.astype(np.float32), below)
    nodes["far"] = np.where(is_leaf, 0, position[np.maximum(far, 0)] + offset)
    return nodes


# --- the compiled loops (numba; compiled on first call, cached beside this file when writable) -----


@numba.njit(nogil=True, cache=True)
def _preprocess(X, impute, kind, source, a, b):  # pragma: no cover - compiled
    Z = np.empty((X.shape[0], kind.shape[0]), np.float32)
    x = np.empty(X.shape[1])
    for i in range(X.shape[0]):
        for c in range(X.shape[1]):
            x[c] = impute[c] if np.isnan(X[i, c]) else X[i, c]
        for o in range(kind.shape[0]):
            v = x[source[o]]
            if kind[o] == 0:  # SCALED
                Z[i, o] = np.float32((v - a[o]) / b[o])
            else:
                Z[i, o] = np.float32(1.0) if v == a[o] else np.float32(0.0)
    return Z


@numba.njit(nogil=True, cache=True)
def _walk(Z, nodes, roots):  # pragma: no cover - compiled
    """Mean positive-class probability over the trees, per row of preprocessed features ``Z``."""
    out = np.zeros(Z.shape[0])
    for i in range(Z.shape[0]):
        total = 0.0
        for root in roots:
            k = root
            while nodes[k].feature >= 0:
                flagged = nodes[k].feature
                goes_left = Z[i, flagged & (NEXT_IS_RIGHT - 1)] <= nodes[k].value
                k = k + 1 if goes_left == (flagged < NEXT_IS_RIGHT) else nodes[k].far
            total += nodes[k].value
        out[i] = total / roots.shape[0]
    return out
