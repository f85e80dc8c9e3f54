"""The compiled inference path: the fitted sklearn pipeline as one onnxruntime graph
(``onnx_graph``) or, for the recipe's preprocessing + forest, as ``compact.CompactPipeline`` (numba).

Serving imports this module; skl2onnx, onnxruntime and scikit-learn are imported only where a graph is
built or loaded, so the model component runs the compact forest without them.

sklearn spends ~10 ms per call in Python overhead (ColumnTransformer, validation); onnxruntime runs the
same graph in tens of microseconds. Forests get their own compact layout (``compact.py``:
onnxruntime's 20 MB of nodes fall out of the CPU caches between requests). The sklearn objects
stay the reference: ``check_equivalence`` proves on the test split that probabilities agree within
1e-5 and the argmax is identical.

Precision matters for trees: sklearn computes the preprocessing in float64 and casts the result to
float32 before walking the trees. The graph does exactly that (double input, double preprocessing,
``CastTransformer`` to float, float trees). A float32 preprocessing would move values by one ulp and
flip splits that sit on a value (we measured 228 of 2,560 test rows disagreeing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from glassbox.contract.labels import argmax_like_sklearn
from glassbox.errors import InvalidInput
from glassbox.pipeline.compact import CompactPipeline, supports

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

PROB_TOLERANCE = 1e-5
ONNX_FILE = "model.onnx"  # the whole pipeline (estimators other than forests)
COMPACT_FILE = "compact.npz"  # CompactPipeline arrays (forests)
FILES = (ONNX_FILE, COMPACT_FILE)


def build(pipeline: Pipeline, n_features: int) -> tuple[FastPath, dict[str, bytes]]:
    """The fast path for a fitted pipeline and the artifact files it is loaded from.

    The recipe's preprocessing + forest becomes a ``CompactPipeline`` (``compact.npz``); any other
    pipeline runs as one onnxruntime graph (``model.onnx``).
    """
    if supports(pipeline):
        files = {COMPACT_FILE: CompactPipeline.from_sklearn(pipeline, n_features).to_bytes()}
    else:
        from glassbox.pipeline.onnx_graph import to_onnx_bytes  # skl2onnx: training only

        files = {ONNX_FILE: to_onnx_bytes(pipeline, n_features)}
    return load(files, n_features), files


def load(files: Mapping[str, bytes], n_features: int) -> FastPath:
    """The fast path from its artifact files (as ``build`` names them)."""
    if COMPACT_FILE in files:
        return CompactFastPath(CompactPipeline.from_bytes(files[COMPACT_FILE]), n_features)
    from glassbox.pipeline.onnx_graph import OnnxFastPath  # onnxruntime only for the graphs that need it

    return OnnxFastPath(files[ONNX_FILE], n_features)


class FastPath:
    """``predict_proba`` over rows in alibi's encoding, agreeing with the sklearn pipeline."""

    n_features: int

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        return argmax_like_sklearn(self.predict_proba(X))


class CompactFastPath(FastPath):
    """The recipe's pipeline compiled by ``compact.CompactPipeline`` (numba)."""

    def __init__(self, compact: CompactPipeline, n_features: int):
        if compact.n_features != n_features:
            raise ValueError(f"compact pipeline takes {compact.n_features} features, not {n_features}")
        self.compact = compact
        self.n_features = n_features

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.compact.predict_proba(as_rows(X, self.n_features))


def as_rows(X: object, n_features: int) -> np.ndarray:
    """Validate and convert input to a C-contiguous float64 (n, n_features) array, or raise InvalidInput."""
    try:
        rows = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"rows must be numbers: {exc}") from None
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise InvalidInput(f"expected rows of {n_features} features, got shape {list(rows.shape)}")
    if rows.shape[0] == 0:
        raise InvalidInput("no rows given")
    return np.ascontiguousarray(rows)


def check_equivalence(reference: np.ndarray, fast: np.ndarray) -> dict[str, float | int | bool]:
    """Compare sklearn's and the fast path's probabilities on the same rows."""
    diff = np.abs(reference - fast)
    same_argmax = argmax_like_sklearn(fast) == np.argmax(reference, axis=1)
    return {
        "rows": len(reference),
        "max_abs_diff": float(diff.max()),
        "argmax_mismatches": int((~same_argmax).sum()),
        "equivalent": bool(diff.max() <= PROB_TOLERANCE and same_argmax.all()),
    }
