"""Open Inference Protocol (V2) tensors <-> rows: the one codec of the model's and the explainer's V2 servers.

A request's ``inputs`` are either **one tensor per feature**, named by the feature, of shape ``[n]`` or
``[n, 1]``, or **one tensor of shape ``[n, width]``** (any name) in feature order. Numbers come in any
numeric datatype (``FP64``, ``FP32``, ``INT64``, ...); categorical values as their names (``BYTES``) or as
codes. Every tensor's ``shape`` must match its ``data``, and everything ends in the same checks as a
Seldon request (``FeatureSchema.check_encoded``), so both protocols refuse the same rows with the same
``RejectedInput`` reasons.

Inputs are JSON dicts (``{"name", "shape", "datatype", "data"}``) or objects with those attributes
(MLServer's ``RequestInput``, whose ``data`` wraps the list in ``.root``); ``data`` is flat or nested
(REST allows both), strings or bytes for ``BYTES``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from glassbox.contract.schema import FeatureSchema, RejectedInput
from glassbox.errors import ConfigError

# V2 datatypes (the specification's table) and how their values are read here.
NUMERIC_DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
)
BYTES = "BYTES"
DATATYPES = NUMERIC_DATATYPES | {BYTES}
# The probabilities output of the model, and the explainer's single output (as MLServer's alibi runtime).
PROBABILITIES_OUTPUT = "probabilities"
LABELS_OUTPUT = "label"
EXPLANATION_OUTPUT = "explanation"
FEATURES_INPUT = "features"  # name of the [n, width] tensor the explainer sends the model
NUMERIC_KINDS = frozenset("fiub")


def _get(tensor: Any, key: str) -> Any:
    return tensor.get(key) if isinstance(tensor, Mapping) else getattr(tensor, key, None)


def _data(tensor: Any) -> Any:
    data = _get(tensor, "data")
    return getattr(data, "root", data)  # MLServer's TensorData is a pydantic RootModel


def decode_inputs(inputs: Any, schema: FeatureSchema, max_rows: int) -> np.ndarray:
    """The rows of a V2 request's ``inputs`` as a float64 ``(n, width)`` array in feature order."""
    if isinstance(inputs, Mapping) or not isinstance(inputs, Sequence) or isinstance(inputs, str | bytes):
        raise RejectedInput("bad_payload", "'inputs' must be a list of tensors")
    if not inputs:
        raise RejectedInput(
            "empty_batch",
            f"the request has no inputs; send one tensor per feature ({', '.join(schema.feature_names)}) "
            f"or one [n, {schema.width}] tensor",
        )
    tensors = [_tensor(t, i) for i, t in enumerate(inputs)]
    if len(tensors) == 1 and tensors[0][0] not in schema.index:
        X = _from_matrix(*tensors[0], schema, max_rows)
    else:
        X = _from_columns(tensors, schema, max_rows)
    schema.check_encoded(X)
    return X


def _tensor(tensor: Any, i: int) -> tuple[str, list[int], str, list]:
    """(name, shape, datatype, flat values) of input ``i``, each checked against the others."""
    name, shape, datatype = (_get(tensor, k) for k in ("name", "shape", "datatype"))
    data = _data(tensor)
    where = f"inputs[{i}]" + (f" {name!r}" if isinstance(name, str) else "")
    if not isinstance(name, str) or not name:
        raise RejectedInput("bad_payload", f"{where}: 'name' must be a non-empty string")
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise RejectedInput("bad_payload", f"{where}: 'shape' must be a list of non-negative integers")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise RejectedInput(
            "bad_datatype",
            f"{where}: datatype {datatype!r} is not a V2 datatype ({', '.join(sorted(DATATYPES))})",
        )
    if not isinstance(data, list | tuple):
        raise RejectedInput("bad_payload", f"{where}: 'data' must be a list of values")
    flat = _flatten(data, where)
    if len(flat) != math.prod(shape):
        raise RejectedInput(
            "bad_dimensions",
            f"{where}: shape {list(shape)} needs {math.prod(shape)} values, 'data' has {len(flat)}",
        )
    return name, list(shape), datatype, flat


def _flatten(data: list | tuple, where: str) -> list:
    """Row-major values of flat or nested ``data`` (REST may nest; gRPC and MLServer send it flat).

    Flat data is taken as it is (a nested value in it is refused later, by the cell that holds it);
    regular nested numbers go through numpy; anything else is walked value by value.
    """
    if not data or not isinstance(data[0], list | tuple):
        return data if isinstance(data, list) else list(data)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):  # ragged
        array = None
    if array is not None and array.dtype.kind in NUMERIC_KINDS:
        return array.ravel().tolist()
    flat: list = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list | tuple):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
        if len(stack) > 32:
            raise RejectedInput("bad_dimensions", f"{where}: 'data' is nested too deeply")
    return flat


def _check_rows(n: int, max_rows: int) -> None:
    if n == 0:
        raise RejectedInput("empty_batch", "the request has no rows; send at least one")
    if n > max_rows:
        raise RejectedInput(
            "too_many_rows", f"the request has {n} rows; at most {max_rows} are accepted per call"
        )


def _numbers(values: list, datatype: str, where: str) -> np.ndarray | None:
    """``values`` as float64 when they are all numbers (the fast path), else ``None``."""
    if datatype == BYTES or not values:
        return None if values else np.empty(0)
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        return None
    if array.dtype.kind not in NUMERIC_KINDS or array.ndim != 1:
        return None
    return array.astype(np.float64, copy=False)


def _cell(value: Any, datatype: str) -> Any:
    """One value as ``FeatureSchema.encode_value`` takes it: BYTES become text, numbers stay numbers."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return repr(bytes(value))  # still named in the error message, never a 500
    return value


def _from_matrix(
    name: str, shape: list[int], datatype: str, values: list, schema: FeatureSchema, max_rows: int
) -> np.ndarray:
    where = f"input {name!r}"
    if len(shape) != 2:
        raise RejectedInput(
            "bad_dimensions",
            f"{where}: a single input must be [rows, {schema.width}] (features in order "
            f"{', '.join(schema.feature_names)}), or send one input per feature named by it; "
            f"got shape {shape}",
        )
    _check_rows(shape[0], max_rows)
    if shape[1] != schema.width:
        raise RejectedInput(
            "wrong_width",
            f"{where} rows have {shape[1]} values; the model expects {schema.width}: "
            f"{', '.join(schema.feature_names)}",
        )
    numbers = _numbers(values, datatype, where)
    if numbers is not None:
        return numbers.reshape(shape)
    X = np.empty((shape[0], schema.width), dtype=np.float64)
    for i in range(shape[0]):
        for j in range(schema.width):
            X[i, j] = schema.encode_value(i, j, _cell(values[i * schema.width + j], datatype))
    return X


def _from_columns(
    tensors: list[tuple[str, list[int], str, list]], schema: FeatureSchema, max_rows: int
) -> np.ndarray:
    names = [t[0] for t in tensors]
    schema.column_order(names, "inputs")  # unknown, duplicate and missing features, named
    rows = None
    for name, shape, _datatype, _values in tensors:
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise RejectedInput(
                "bad_dimensions",
                f"input {name!r}: a feature's input must be [rows] or [rows, 1], not {shape}",
            )
        if rows is None:
            rows = shape[0]
            _check_rows(rows, max_rows)
        elif shape[0] != rows:
            raise RejectedInput(
                "bad_dimensions",
                f"input {name!r} has {shape[0]} rows but input {tensors[0][0]!r} has {rows}: every feature's "
                "input needs one value per row",
            )
    assert rows is not None
    X = np.empty((rows, schema.width), dtype=np.float64)
    for name, _shape, datatype, values in tensors:
        j = schema.index[name]
        numbers = _numbers(values, datatype, name)
        if numbers is not None:
            X[:, j] = numbers
            continue
        for i, value in enumerate(values):
            X[i, j] = schema.encode_value(i, j, _cell(value, datatype))
    return X


# --- answers and descriptions -------------------------------------------------------------------


def encode_rows(X: np.ndarray) -> dict[str, Any]:
    """``X`` (rows in feature order) as the single ``[n, width]`` ``FP64`` input the explainer sends."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    return {"name": FEATURES_INPUT, "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}


def decode_probabilities(outputs: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """The ``probabilities`` output of a model answer as a ``(n_rows, n_classes)`` array; ``ValueError``
    naming what is wrong when the answer has none of that shape."""
    if not isinstance(outputs, list):
        raise ValueError("the answer has no 'outputs' list")
    for output in outputs:
        if _get(output, "name") == PROBABILITIES_OUTPUT:
            values = np.asarray(_flatten(_data(output) or [], "outputs"), dtype=np.float64)
            if values.size != n_rows * n_classes:
                raise ValueError(
                    f"output {PROBABILITIES_OUTPUT!r} has {values.size} values, "
                    f"expected {n_rows} x {n_classes}"
                )
            return values.reshape(n_rows, n_classes)
    raise ValueError(f"the answer has no {PROBABILITIES_OUTPUT!r} output")


def requested_outputs(requested: Any, available: Sequence[str]) -> tuple[str, ...]:
    """The outputs to answer: those the request's ``outputs`` names (V2: all when it names none);
    ``RejectedInput`` naming an output the server does not have."""
    if not requested:
        return tuple(available)
    names = [_get(output, "name") for output in requested]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise RejectedInput(
            "bad_output",
            f"unknown output(s) {', '.join(map(repr, unknown))} in 'outputs'; this model answers "
            f"{', '.join(map(repr, available))}",
        )
    return tuple(name for name in available if name in names)


def describe_inputs(schema: FeatureSchema) -> list[dict[str, Any]]:
    """V2 metadata of the inputs: one per feature, ``BYTES`` with its category names for categoricals.

    Category names go in ``parameters.categories`` as a JSON string (gRPC parameters hold only scalars);
    codes 0..k-1 in that order are accepted too (as any numeric datatype).
    """
    described = []
    for j, name in enumerate(schema.feature_names):
        if schema.is_categorical(j):
            names = list(schema.categories[j])
            described.append(
                {
                    "name": name,
                    "datatype": BYTES,
                    "shape": [-1],
                    "parameters": {"content_type": "str", "categories": json.dumps(names)},
                }
            )
        else:
            described.append(
                {"name": name, "datatype": "FP64", "shape": [-1], "parameters": {"content_type": "np"}}
            )
    return described


def describe_outputs(schema: FeatureSchema) -> list[dict[str, Any]]:
    """V2 metadata of the model's outputs: probabilities per class (in ``class_names`` order) and labels."""
    classes = json.dumps(list(schema.class_names))
    return [
        {
            "name": PROBABILITIES_OUTPUT,
            "datatype": "FP64",
            "shape": [-1, len(schema.class_names)],
            "parameters": {"content_type": "np", "class_names": classes},
        },
        {"name": LABELS_OUTPUT, "datatype": BYTES, "shape": [-1], "parameters": {"content_type": "str"}},
    ]


def runtime_settings[Settings](kind: type[Settings], mlserver_settings: Any, runtime: str) -> Settings:
    """A V2 runtime's component settings (``GLASSBOX_MODEL_*`` / ``GLASSBOX_EXPLAINER_*`` from the
    environment) overridden by MLServer's model settings ``parameters``: ``uri`` is the artifacts dir,
    ``extra`` holds any other field by name."""
    parameters = mlserver_settings.parameters
    overrides: dict[str, Any] = dict((parameters.extra or {}) if parameters else {})
    if parameters is not None and parameters.uri:
        overrides["artifacts"] = parameters.uri
    try:
        return kind(**overrides)
    except ValueError as exc:
        raise ConfigError(f"bad {runtime} settings: {exc}") from exc
