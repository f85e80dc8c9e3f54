"""The fitted sklearn pipeline as one onnxruntime graph: the fast path of estimators other than forests.

Precision matters for trees: sklearn computes the preprocessing in float64 and casts the result to
float32 before walking the trees. The graph does exactly that (double input, double preprocessing,
``CastTransformer`` to float, float trees).
"""

from __future__ import annotations

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

from glassbox.pipeline.fastpath import FastPath, as_rows

INPUT_NAME = "X"
PROBABILITIES = "probabilities"


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
