"""The compiled inference path: the fitted sklearn pipeline as one onnxruntime graph or, for the
recipe's preprocessing + forest, as ``compact.CompactPipeline`` (numba).

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

import numpy as np
import onnxruntime as ort
from onnx import TensorProto
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType
from skl2onnx.operator_converters.common import concatenate_variables
from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
from skl2onnx.sklapi import CastTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from glassbox.errors import InvalidInput
from glassbox.pipeline.compact import CompactPipeline, supports

PROB_TOLERANCE = 1e-5
INPUT_NAME = "X"
PROBABILITIES = "probabilities"
ONNX_FILE = "model.onnx"  # the whole pipeline (estimators other than forests)
COMPACT_FILE = "compact.npz"  # CompactPipeline arrays (forests)
FILES = (ONNX_FILE, COMPACT_FILE)


def _convert_imputer(scope, operator, container) -> None:
    """SimpleImputer for double inputs: onnxruntime has no double ``Imputer`` kernel, so use IsNaN + Where."""
    if operator.inputs[0].type.__class__ is not DoubleTensorType:
        convert_sklearn_imputer(scope, operator, container)
        return
    imputer = operator.raw_operator
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise NotImplementedError("fast path: SimpleImputer with missing_values other than NaN")
    features = concatenate_variables(scope, operator.inputs, container)
    fill = scope.get_unique_variable_name("impute_fill")
    container.add_initializer(
        fill, TensorProto.DOUBLE, [len(imputer.statistics_)], imputer.statistics_.tolist()
    )
    mask = scope.get_unique_variable_name("impute_mask")
    container.add_node("IsNaN", [features], [mask], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Where",
        [mask, fill, features],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Where"),
    )


def to_onnx_bytes(pipeline: Pipeline, n_features: int) -> bytes:
    """Serialize the fitted ``Pipeline(preprocessor, classifier)`` as an ONNX model taking float64 rows."""
    update_registered_converter(
        SimpleImputer, "SklearnSimpleImputer", calculate_sklearn_imputer_output_shapes, _convert_imputer
    )
    preprocessor, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    # Same fitted objects, plus the float32 cast sklearn's trees apply to their input.
    graph = Pipeline(
        [
            ("preprocessor", preprocessor),
            ("cast", CastTransformer(dtype=np.float32)),
            ("classifier", classifier),
        ]
    )
    graph.steps[1][1].fit(np.zeros((1, 1)))  # stateless; fit only marks it fitted
    onx = convert_sklearn(
        graph,
        initial_types=[(INPUT_NAME, DoubleTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onx.SerializeToString()


def build(pipeline: Pipeline, n_features: int) -> tuple[FastPath, dict[str, bytes]]:
    """The fast path for a fitted pipeline and the artifact files it is loaded from.

    The recipe's preprocessing + forest becomes a ``CompactPipeline`` (``compact.npz``); any other
    pipeline runs as one onnxruntime graph (``model.onnx``).
    """
    if supports(pipeline):
        files = {COMPACT_FILE: CompactPipeline.from_sklearn(pipeline, n_features).to_bytes()}
    else:
        files = {ONNX_FILE: to_onnx_bytes(pipeline, n_features)}
    return load(files, n_features), files


def load(files: Mapping[str, bytes], n_features: int) -> FastPath:
    """The fast path from its artifact files (as ``build`` names them)."""
    if COMPACT_FILE in files:
        return CompactFastPath(CompactPipeline.from_bytes(files[COMPACT_FILE]), n_features)
    return OnnxFastPath(files[ONNX_FILE], n_features)


class FastPath:
    """``predict_proba`` over rows in alibi's encoding, agreeing with the sklearn pipeline."""

    n_features: int

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        return argmax_like_sklearn(self.predict_proba(X))


class OnnxFastPath(FastPath):
    """An onnxruntime session over the whole pipeline (``model.onnx``)."""

    def __init__(self, onnx_bytes: bytes, n_features: int):
        options = ort.SessionOptions()
        # One thread: rows are few per call and the serving workers already use every core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.n_features = n_features

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        rows = as_rows(X, self.n_features)
        (probabilities,) = self.session.run([PROBABILITIES], {INPUT_NAME: rows})
        return probabilities.astype(np.float64)


class CompactFastPath(FastPath):
    """The recipe's pipeline compiled by ``compact.CompactPipeline`` (numba)."""

    def __init__(self, compact: CompactPipeline, n_features: int):
        if compact.n_features != n_features:
            raise ValueError(f"compact pipeline takes {compact.n_features} features, not {n_features}")
        self.compact = compact
        self.n_features = n_features

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.compact.predict_proba(as_rows(X, self.n_features))


def argmax_like_sklearn(probabilities: np.ndarray) -> np.ndarray:
    """Class index per row; exact ties (0.5/0.5 in float32 noise) go to the first class, as in sklearn."""
    return np.argmax(np.round(probabilities, 6), axis=1)


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
