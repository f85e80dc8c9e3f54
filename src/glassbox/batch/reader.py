"""Read a batch's input file (CSV or JSONL) into ids and encoded rows, refusing it whole if any line is bad.

Every line is checked before any work starts, and every bad line is reported with its line number, so a
typo on line 90,000 does not surface after an hour of explaining. Cells are decoded by the contract's
parser (``glassbox.contract.payload.parse_rows``), the same one the model and the explainer use; this
module only turns CSV text into the values a JSON request would carry (numbers, category names).

CSV: a header naming the id column and every feature (any order); numbers as text, categoricals as
names or codes. JSONL: one object per line with the id and either every feature by name or ``"row"``,
a list of the values in feature order.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.contract.payload import parse_rows
from glassbox.contract.schema import FeatureSchema
from glassbox.errors import InvalidInput

MAX_REPORTED = 20  # bad lines listed in the message; the count covers all of them
ROW_KEY = "row"  # JSONL: the row as a list in feature order


class BadInputFile(InvalidInput):
    """The input file has bad lines; ``problems`` holds ``(line number, message)`` for each."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  line {line}: {message}" for line, message in problems[:MAX_REPORTED])
        more = len(problems) - MAX_REPORTED
        tail = f"\n  ... and {more} more bad line(s)" if more > 0 else ""
        super().__init__(f"{path}: {len(problems)} bad input line(s); nothing was explained\n{shown}{tail}")


@dataclass(frozen=True)
class InputRows:
    """The batch: row ids, their line numbers in the file and the rows in alibi's encoding."""

    ids: list[str]
    lines: list[int]
    X: np.ndarray  # (n, width) float64

    def __len__(self) -> int:
        return len(self.ids)


def read_rows(path: Path, schema: FeatureSchema, id_column: str = "id") -> InputRows:
    """Every row of ``path`` (``.csv`` or ``.jsonl``/``.json``/``.ndjson``), or ``BadInputFile``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (spreadsheet exports) is not part of the header
    except FileNotFoundError:
        raise InvalidInput(f"input file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix.lower() == ".csv":
        cells = _csv_lines(text, schema, id_column)
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        cells = _jsonl_lines(text, schema, id_column)
    else:
        raise InvalidInput(f"{path}: input must be .csv or .jsonl (one JSON object per line)")
    return _collect(path, cells, schema)


# Each source yields (line number, id, row values in feature order, or an error message).
Line = tuple[int, str, list[Any] | None, str | None]


def _collect(path: Path, cells: Iterator[Line], schema: FeatureSchema) -> InputRows:
    ids: list[str] = []
    lines: list[int] = []
    rows: list[np.ndarray] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for line, row_id, values, error in cells:
        if error is None and row_id in first_line:
            error = f"id {row_id!r} is also on line {first_line[row_id]}; ids must be unique"
        if error is None:
            try:
                rows.append(parse_rows([values], schema, 1, where="row")[0])
            except InvalidInput as exc:
                # The parser names "row 0" of a one-row request; here the line number says which.
                error = exc.message.removeprefix("row 0, ").replace("row rows have", "the row has", 1)
        if error is not None:
            problems.append((line, error))
            continue
        first_line[row_id] = line
        ids.append(row_id)
        lines.append(line)
    if problems:
        raise BadInputFile(path, problems)
    if not ids:
        raise InvalidInput(f"{path}: no rows to explain")
    return InputRows(ids, lines, np.vstack(rows))


def _csv_lines(text: str, schema: FeatureSchema, id_column: str) -> Iterator[Line]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("the CSV file is empty: expected a header line") from None
    except csv.Error as exc:
        raise InvalidInput(f"line 1: not valid CSV ({exc})") from None
    header = [name.strip() for name in header]
    if id_column not in header:
        raise InvalidInput(f"line 1: the CSV header has no id column {id_column!r} (set --id-column)")
    features = [name for name in header if name != id_column]
    order = schema.column_order(features, "the CSV header")  # unknown, duplicate, missing: one message
    position = {name: i for i, name in enumerate(header)}
    columns = [position[features[j]] for j in (order if order is not None else range(len(features)))]
    id_at = position[id_column]
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, "", None, f"not valid CSV ({exc})"
            continue
        if not record:  # a blank line
            continue
        if len(record) != len(header):
            yield line, "", None, f"has {len(record)} values; the header names {len(header)} columns"
            continue
        row_id = record[id_at].strip()
        if not row_id:
            yield line, "", None, f"empty id in column {id_column!r}"
            continue
        values = [_cell(record[k], schema.category_codes.get(j)) for j, k in enumerate(columns)]
        yield line, row_id, values, None


def _cell(text: str, category_codes: dict[str, int] | None) -> Any:
    """A CSV cell as JSON would carry it: a number, a name, or None for an empty cell."""
    text = text.strip()
    if not text:
        return None
    if category_codes is not None and text in category_codes:
        return text  # a category name, even one that reads as a number
    try:
        value = float(text)
    except ValueError:
        return text  # a category name, or text in a numeric column (the parser names it)
    return value if math.isfinite(value) else text  # "nan"/"inf": text, refused as not a number


def _jsonl_lines(text: str, schema: FeatureSchema, id_column: str) -> Iterator[Line]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            yield line, "", None, f"not valid JSON ({exc})"
            continue
        if not isinstance(obj, dict):
            yield line, "", None, f"expected a JSON object, got {type(obj).__name__}"
            continue
        row_id = obj.pop(id_column, None)
        if isinstance(row_id, bool) or not isinstance(row_id, str | int) or str(row_id).strip() == "":
            yield line, "", None, f"missing or empty id {id_column!r} (a string or an integer)"
            continue
        row_id = str(row_id).strip()
        if ROW_KEY in obj:
            values, extra = obj.pop(ROW_KEY), sorted(obj)
            if extra:
                yield line, row_id, None, f"'{ROW_KEY}' goes alone with the id; also found {extra}"
            elif not isinstance(values, list):
                yield line, row_id, None, f"'{ROW_KEY}' must be a list of {schema.width} values"
            else:
                yield line, row_id, values, None
            continue
        unknown = [k for k in obj if k not in schema.index]
        missing = [n for n in schema.feature_names if n not in obj]
        if unknown or missing:
            parts = [f"unknown feature(s) {unknown}"] if unknown else []
            parts += [f"lacks feature(s) {missing}"] if missing else []
            yield line, row_id, None, "; ".join(parts)
            continue
        yield line, row_id, [obj[name] for name in schema.feature_names], None
