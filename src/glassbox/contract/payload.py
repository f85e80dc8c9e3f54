"""Turn a Seldon request (``ndarray``, ``tensor``, ``names``, ``jsonData``) or a list of rows into a
checked float matrix: the one parser behind the model, the explainer and batch input.

The common case (a list of rows of numbers) costs one ``np.asarray`` plus vectorised checks; only
requests with text in them (category names, mistakes) take the cell-by-cell path, which is also
where the precise error messages come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from glassbox.contract.schema import FeatureSchema, RejectedInput

NUMERIC_KINDS = frozenset("fiub")  # float, int, unsigned, bool: what np.asarray yields for plain numbers


def parse_request(payload: Any, schema: FeatureSchema, max_rows: int) -> np.ndarray:
    """The request's rows as a float64 ``(n, width)`` array in feature order, or ``RejectedInput``."""
    if not isinstance(payload, Mapping):
        raise RejectedInput(
            "bad_payload", f"the request body must be a JSON object, got {type(payload).__name__}"
        )
    if "jsonData" in payload:
        return _from_records(payload["jsonData"], schema, max_rows, "jsonData")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        other = [k for k in ("strData", "binData") if k in payload]
        hint = f"{other[0]} is not supported by this model; " if other else ""
        raise RejectedInput(
            "bad_payload", hint + "send 'data' (with 'ndarray' or 'tensor', optionally 'names') or 'jsonData'"
        )
    order = _names_order(data.get("names"), schema, "data.names")
    if "ndarray" in data:
        rows = data["ndarray"]
        if not isinstance(rows, list):
            raise RejectedInput("bad_payload", "data.ndarray must be a list of rows")
        X = _from_rows(rows, schema, max_rows, order, "data.ndarray")
    elif "tensor" in data:
        X = _from_tensor(data["tensor"], schema, max_rows, order)
    else:
        raise RejectedInput("bad_payload", "data must hold 'ndarray' or 'tensor' (rows of feature values)")
    schema.check_encoded(X)
    return X


def request_meta(payload: Mapping[str, Any], where: str = "meta") -> dict[str, Any]:
    """The message's ``meta`` (``{}`` when absent), refusing shapes Seldon's own parser would choke on."""
    meta = payload.get("meta")
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise RejectedInput("bad_payload", f"{where} must be an object, got {type(meta).__name__}")
    tags, puid = meta.get("tags"), meta.get("puid")
    if tags is not None and not isinstance(tags, Mapping):
        raise RejectedInput("bad_payload", f"{where}.tags must be an object, got {type(tags).__name__}")
    if puid is not None and not isinstance(puid, str):
        raise RejectedInput("bad_payload", f"{where}.puid must be a string, got {type(puid).__name__}")
    return dict(meta)


def parse_rows(
    rows: Any, schema: FeatureSchema, max_rows: int, names: Any = None, where: str = "instances"
) -> np.ndarray:
    """Rows sent as such (the explainer's ``jsonData.instances``, batch files): lists in feature order
    (or in the order of ``names``), records keyed by feature name, or a single flat row."""
    if isinstance(rows, Mapping) or (
        isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows)
    ):
        if names:
            raise RejectedInput("bad_payload", f"{where}: 'names' goes with list rows, not with records")
        return _from_records(rows, schema, max_rows, where)
    if not isinstance(rows, list):
        raise RejectedInput(
            "bad_payload", f"{where} must be a list of rows (lists of values or records {{feature: value}})"
        )
    if rows and not any(isinstance(r, list | Mapping) for r in rows):
        rows = [rows]  # one flat row
    order = _names_order(names, schema, f"{where} names")
    X = _from_rows(rows, schema, max_rows, order, where)
    schema.check_encoded(X)
    return X


def _names_order(names: Any, schema: FeatureSchema, where: str) -> np.ndarray | None:
    if names is None or names == []:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RejectedInput("bad_payload", f"{where} must be a list of feature names (strings)")
    return schema.column_order(names, where)


def _check_rows(n: int, max_rows: int) -> None:
    if n == 0:
        raise RejectedInput("empty_batch", "the request has no rows; send at least one")
    if n > max_rows:
        raise RejectedInput(
            "too_many_rows", f"the request has {n} rows; at most {max_rows} are accepted per call"
        )


def _check_shape(shape: tuple[int, ...], schema: FeatureSchema, where: str) -> None:
    if len(shape) != 2:
        raise RejectedInput(
            "bad_dimensions",
            f"{where} must be 2-D (rows x {schema.width} features), not {len(shape)}-D {list(shape)}",
        )
    if shape[1] != schema.width:
        raise RejectedInput(
            "wrong_width",
            f"{where} rows have {shape[1]} values; the model expects {schema.width}: "
            f"{', '.join(schema.feature_names)}",
        )


def _from_rows(
    rows: list, schema: FeatureSchema, max_rows: int, order: np.ndarray | None, where: str
) -> np.ndarray:
    _check_rows(len(rows), max_rows)
    try:
        array = np.asarray(rows)
    except (ValueError, TypeError):  # ragged rows: diagnose cell by cell
        array = None
    if array is not None and array.dtype.kind in NUMERIC_KINDS:
        _check_shape(array.shape, schema, where)
        X = array.astype(np.float64, copy=False)
        return X[:, order] if order is not None else X
    return _from_cells(rows, schema, order, where)


def _from_cells(rows: list, schema: FeatureSchema, order: np.ndarray | None, where: str) -> np.ndarray:
    """Slow path for rows with text or odd shapes: names the first bad cell precisely."""
    source = order if order is not None else np.arange(schema.width)
    X = np.empty((len(rows), schema.width), dtype=np.float64)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RejectedInput(
                "bad_dimensions", f"{where} row {i} must be a list of {schema.width} values, got {row!r:.80}"
            )
        if len(row) != schema.width:
            raise RejectedInput(
                "wrong_width",
                f"{where} row {i} has {len(row)} values; the model expects {schema.width}: "
                f"{', '.join(schema.feature_names)}",
            )
        for j in range(schema.width):
            X[i, j] = schema.encode_value(i, j, row[source[j]])
    return X


def _from_tensor(tensor: Any, schema: FeatureSchema, max_rows: int, order: np.ndarray | None) -> np.ndarray:
    if not isinstance(tensor, Mapping) or not isinstance(tensor.get("shape"), list):
        raise RejectedInput("bad_payload", "data.tensor must be an object with 'shape' and 'values'")
    shape, values = tensor["shape"], tensor.get("values", [])
    if not all(isinstance(d, int) and d >= 0 for d in shape) or not isinstance(values, list):
        raise RejectedInput("bad_payload", "data.tensor.shape must be non-negative integers, values a list")
    if len(shape) == 2:
        _check_rows(shape[0], max_rows)
    _check_shape(tuple(shape), schema, "data.tensor")
    if len(values) != shape[0] * shape[1]:
        raise RejectedInput(
            "wrong_width", f"data.tensor has {len(values)} values; shape {shape} needs {shape[0] * shape[1]}"
        )
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # nested or ragged values: the cell path names the bad one
        array = None
    if array is None or array.dtype.kind not in NUMERIC_KINDS:
        rows = [values[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
        return _from_cells(rows, schema, order, "data.tensor")
    X = array.astype(np.float64, copy=False).reshape(shape)
    return X[:, order] if order is not None else X


def _from_records(records: Any, schema: FeatureSchema, max_rows: int, where: str) -> np.ndarray:
    """One record or a list of records keyed by feature name (``jsonData``, ``instances``)."""
    if isinstance(records, Mapping):
        records = [records]
    if not isinstance(records, list):
        raise RejectedInput(
            "bad_payload", f"{where} must be a record {{feature: value}} or a list of records"
        )
    _check_rows(len(records), max_rows)
    expected = set(schema.feature_names)
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise RejectedInput("bad_payload", f"{where} record {i} must be an object keyed by feature name")
        if record.keys() != expected:
            unknown = [k for k in record if k not in expected]
            if unknown:
                raise RejectedInput(
                    "unknown_feature",
                    f"{where} record {i}: unknown feature(s) {', '.join(map(repr, unknown))}; "
                    f"the model's features are {', '.join(schema.feature_names)}",
                )
            missing = [k for k in schema.feature_names if k not in record]
            raise RejectedInput(
                "missing_feature", f"{where} record {i} lacks feature(s): {', '.join(missing)}"
            )
        rows.append([record[name] for name in schema.feature_names])
    X = _from_rows(rows, schema, max_rows, None, where)
    schema.check_encoded(X)
    return X
