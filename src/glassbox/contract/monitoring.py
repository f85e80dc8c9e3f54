"""What the model sends the monitor (docs/contracts.md, "Monitor intake"): its builder and its parser.

``POST {monitor}/api/v1/rows`` with ``{"records": [record, ...]}``; one record per prediction request,
holding that request's sampled rows as numbers only:

    {"request_id": "<puid>", "model_name": "loanclassifier", "model_version": "<manifest version>",
     "timestamp": 1764390000.123, "rows": [0, 1, ...],
     "features_b64": "<base64 of float64 little-endian, rows x 12, row-major>",
     "probabilities_b64": "<the same, rows x classes>"}

``features`` and ``probabilities`` as JSON lists of lists (``[[12 numbers], ...]``) are accepted in place
of the ``_b64`` fields (people, curl, tests); the model sends the arrays' bytes. Why: the model formats
every sampled row on its sender thread, beside the requests and under the same GIL. A per-row intake
record cost about 100 µs a row; ``json.dumps`` of a 100-row request's lists 350 µs; base64 of the
bytes 25 µs, and the monitor reads them with ``np.frombuffer``, exactly (no decimal round trip).
``MonitorRowsBuilder`` (model) and ``parse_rows_body`` (monitor) are the only two places that name
these fields.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.contract.records import UncertainRows
from glassbox.contract.schema import FeatureSchema, RejectedInput

ROWS_PATH = "/api/v1/rows"
FIELDS = ("request_id", "model_name", "model_version", "timestamp", "rows")
LITTLE_F8 = np.dtype("<f8")


class MonitorRowsBuilder:
    """Formats a request's sampled rows (an ``UncertainRows`` of every sampled row) as one record."""

    def __init__(self, model_name: str, model_version: str):
        self.model_name, self.model_version = model_name, model_version

    def build(self, item: UncertainRows) -> list[tuple[str, str]]:
        text = json.dumps(
            {
                "request_id": item.request_id,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "timestamp": item.created_at,
                "rows": item.rows.tolist(),
                "features_b64": _b64(item.features),
                "probabilities_b64": _b64(item.probabilities),
            }
        )
        return [(item.request_id, text)]


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=LITTLE_F8).tobytes()).decode("ascii")


@dataclass(frozen=True)
class RecordError:
    index: int
    id: str
    reason: str  # label of glassbox_monitor_rejected_total
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "reason": self.reason, "error": self.message}


@dataclass(frozen=True)
class MonitorRows:
    """The accepted records of one body, as arrays (rows of all records, in order)."""

    request_ids: list[str]  # one per record
    timestamps: list[float]  # one per record
    record_of_row: np.ndarray  # (n,) index into request_ids
    row_in_request: np.ndarray  # (n,) the row's position in its prediction request
    X: np.ndarray  # (n, width) float64, alibi's encoding
    probabilities: np.ndarray  # (n, classes)
    errors: list[RecordError]

    def __len__(self) -> int:
        return len(self.X)


def parse_rows_body(
    body: bytes | str, schema: FeatureSchema, model_version: str, max_rows: int
) -> MonitorRows:
    """Parse and check a body; a malformed body raises ``RejectedInput``, a bad record is an error entry.

    Refused as a whole (``RejectedInput``): not JSON (``non_json``), not ``{"records": [...]}``
    (``bad_body``), more than ``max_rows`` rows (``too_many_rows``). Refused per record: a missing or
    mistyped field (``bad_record``), another model version (``unknown_model_version``), rows whose width
    is not the schema's (``wrong_width``), NaN/Infinity (``non_finite``), category codes outside the
    category map (``unknown_category``), probabilities that are not a distribution (``bad_probabilities``).
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RejectedInput("non_json", f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise RejectedInput("bad_body", 'the body must be an object {"records": [record, ...]}')
    records = payload["records"]
    width, classes = schema.width, len(schema.class_names)
    ids: list[str] = []
    stamps: list[float] = []
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    errors: list[RecordError] = []
    total = 0
    for index, record in enumerate(records):
        try:
            request_id, stamp, rows, X, P = _record(record, width, classes, model_version)
            schema.check_encoded(X)
        except RejectedInput as exc:
            rid = record.get("request_id") if isinstance(record, dict) else None
            errors.append(RecordError(index, rid if isinstance(rid, str) else "", exc.reason, exc.message))
            continue
        total += len(X)
        if total > max_rows:
            raise RejectedInput("too_many_rows", f"the body holds more than {max_rows} rows; send fewer")
        ids.append(request_id)
        stamps.append(stamp)
        blocks.append((rows, X, P))
    n_records = len(blocks)
    return MonitorRows(
        request_ids=ids,
        timestamps=stamps,
        record_of_row=np.repeat(np.arange(n_records), [len(b[0]) for b in blocks]).astype(np.intp),
        row_in_request=np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, np.intp),
        X=np.vstack([b[1] for b in blocks]) if blocks else np.zeros((0, width)),
        probabilities=np.vstack([b[2] for b in blocks]) if blocks else np.zeros((0, classes)),
        errors=errors,
    )


def _record(
    record: Any, width: int, classes: int, model_version: str
) -> tuple[str, float, np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(record, dict):
        raise RejectedInput("bad_record", f"a record must be an object, not {type(record).__name__}")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise RejectedInput("bad_record", f"record lacks field(s): {', '.join(missing)}")
    request_id, version, stamp = record["request_id"], record["model_version"], record["timestamp"]
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 200:
        raise RejectedInput("bad_record", "request_id must be a string of 1 to 200 characters")
    if not isinstance(version, str) or version != model_version:
        raise RejectedInput(
            "unknown_model_version",
            f"model_version {version!r:.80} is not the monitored version {model_version!r}",
        )
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise RejectedInput("bad_record", "timestamp must be a number (epoch seconds)")
    rows = _matrix(record["rows"], "rows", 1)
    X = _array(record, "features", len(rows), width, "wrong_width", "features")
    P = _array(record, "probabilities", len(rows), classes, "bad_probabilities", "probabilities")
    if X.shape[1:] != (width,) and len(X):
        raise RejectedInput(
            "wrong_width", f"features rows have {X.shape[1]} values; the model has {width} features"
        )
    if len(X) == 0:
        X = X.reshape(0, width)
    if not (len(rows) == len(X) == len(P)):
        raise RejectedInput(
            "bad_record",
            f"rows, features and probabilities differ in length: {len(rows)}, {len(X)}, {len(P)}",
        )
    if len(P) and (
        P.shape[1] != classes
        or not np.isfinite(P).all()
        or (P < 0).any()
        or (P > 1).any()
        or (np.abs(P.sum(axis=1) - 1) > 1e-3).any()
    ):
        raise RejectedInput(
            "bad_probabilities", f"probabilities must be rows of {classes} probabilities summing to 1"
        )
    if len(P) == 0:
        P = P.reshape(0, classes)
    if not np.isfinite(rows).all() or (rows != np.floor(rows)).any() or (rows < 0).any():
        raise RejectedInput("bad_record", "rows must be non-negative integers (positions in the request)")
    return request_id, float(stamp), rows.astype(np.intp), X, P


def _array(record: dict, name: str, n: int, width: int, reason: str, what: str) -> np.ndarray:
    """``name`` as a JSON list of lists, or ``name_b64``: base64 float64 little-endian, ``n`` x ``width``."""
    encoded = record.get(f"{name}_b64")
    if encoded is None:
        if name not in record:
            raise RejectedInput("bad_record", f"record lacks field {name} (or {name}_b64)")
        return _matrix(record[name], name, 2)
    if not isinstance(encoded, str):
        raise RejectedInput("bad_record", f"{name}_b64 must be a base64 string")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RejectedInput("bad_record", f"{name}_b64 is not valid base64") from None
    if len(raw) != n * width * LITTLE_F8.itemsize:
        raise RejectedInput(
            reason,
            f"{name}_b64 holds {len(raw) / LITTLE_F8.itemsize:g} values; {n} rows of {width} {what} need "
            f"{n * width}",
        )
    return np.frombuffer(raw, dtype=LITTLE_F8).astype(np.float64).reshape(n, width)


def _matrix(value: Any, name: str, ndim: int) -> np.ndarray:
    """A list (of lists) of numbers as float64; text, null, nesting and ragged rows are refused."""
    if not isinstance(value, list):
        raise RejectedInput("bad_record", f"{name} must be a list")
    try:
        array = np.array(value)
    except (TypeError, ValueError, OverflowError):  # ragged: numpy refuses inhomogeneous shapes
        if ndim == 2 and all(isinstance(row, list) for row in value):
            lengths = sorted({len(row) for row in value})
            raise RejectedInput("wrong_width", f"{name} rows differ in width: {lengths[:5]}") from None
        raise RejectedInput("bad_record", f"{name} must be {_shape(ndim)} of numbers") from None
    if len(value) == 0:
        return np.zeros((0,) * ndim, dtype=np.float64)
    # Numbers only: numpy would also turn numeric text ("1.5") into floats; JSON booleans are numbers here,
    # as in the model's own input contract.
    if array.dtype.kind not in "biuf" or array.ndim != ndim:
        raise RejectedInput("bad_record", f"{name} must be {_shape(ndim)} of numbers")
    return array.astype(np.float64)


def _shape(ndim: int) -> str:
    return "a list of lists" if ndim == 2 else "a list"
