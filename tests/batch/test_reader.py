"""The batch input reader (property tests): what is written as CSV or JSONL reads back as the same ids
and rows, and one bad cell anywhere is reported with its own line number and nothing else."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glassbox.batch.reader import BadInputFile, read_rows
from glassbox.contract.schema import FeatureSchema
from glassbox.errors import InvalidInput

SCHEMA = FeatureSchema.of(["Age", "Colour", "Hours"], {1: ["red", "green", "1.5"]}, ["no", "yes"])

numbers = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)) | st.integers(-1000, 1000)
rows = st.tuples(numbers, st.integers(0, 2), numbers)
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
              max_size=8).filter(lambda s: s.strip() == s)  # fmt: skip
batches = st.lists(st.tuples(ids, rows, st.booleans()), min_size=1, max_size=30, unique_by=lambda t: t[0])


def write_csv(path: Path, batch, column_order: list[str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(column_order)
    for row_id, (age, colour, hours), by_name in batch:
        cells = {"id": row_id, "Age": age, "Colour": SCHEMA.categories[1][colour] if by_name else colour,
                 "Hours": hours}  # fmt: skip
        writer.writerow([cells[name] for name in column_order])
    path.write_text(out.getvalue(), encoding="utf-8")


def write_jsonl(path: Path, batch) -> None:
    lines = []
    for row_id, (age, colour, hours), by_name in batch:
        if by_name:
            lines.append({"id": row_id, "Age": age, "Colour": SCHEMA.categories[1][colour], "Hours": hours})
        else:
            lines.append({"id": row_id, "row": [age, colour, hours]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


settings_ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings_
@given(
    batch=batches,
    order=st.permutations(["id", "Age", "Colour", "Hours"]),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_rows_read_back_as_written(tmp_path, batch, order, fmt):
    path = tmp_path / f"rows.{fmt}"
    write_csv(path, batch, list(order)) if fmt == "csv" else write_jsonl(path, batch)
    got = read_rows(path, SCHEMA)
    assert got.ids == [row_id for row_id, _, _ in batch]
    first = 2 if fmt == "csv" else 1
    assert got.lines == list(range(first, first + len(batch)))
    expected = np.array([row for _, row, _ in batch], dtype=np.float64)
    np.testing.assert_array_equal(got.X, expected)


BAD_CELLS = {  # (column, value) -> what the message says
    ("Age", "abc"): "expected a number, got text 'abc'",
    ("Colour", "purple"): "unknown category 'purple'",
    ("Colour", "7"): "code 7 is not a category code",
    ("Hours", ""): "value is missing",
}


@settings_
@given(batch=batches, bad=st.sampled_from(sorted(BAD_CELLS)), where=st.integers(0, 1000),
       fmt=st.sampled_from(["csv", "jsonl"]))  # fmt: skip
def test_a_bad_cell_is_reported_on_its_line(tmp_path, batch, bad, where, fmt):
    path = tmp_path / f"rows.{fmt}"
    write_csv(path, batch, ["id", "Age", "Colour", "Hours"]) if fmt == "csv" else write_jsonl(path, batch)
    lines = path.read_text(encoding="utf-8").splitlines()
    index = (1 if fmt == "csv" else 0) + where % len(batch)
    column, value = bad
    if fmt == "csv":
        cells = next(csv.reader([lines[index]]))
        cells[["id", "Age", "Colour", "Hours"].index(column)] = value
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(cells)
        lines[index] = out.getvalue()
    else:
        record = json.loads(lines[index])
        cell = None if value == "" else (int(value) if value.isdigit() else value)
        if "row" in record:
            record["row"][["Age", "Colour", "Hours"].index(column)] = cell
        else:
            record[column] = cell
        lines[index] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BadInputFile) as caught:
        read_rows(path, SCHEMA)
    assert len(caught.value.problems) == 1
    line, message = caught.value.problems[0]
    assert line == index + 1
    assert BAD_CELLS[bad] in message and f"'{column}'" in message


def test_a_header_without_the_id_or_with_an_unknown_feature_is_refused(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("Age,Colour,Hours\n1,red,2\n")
    with pytest.raises(InvalidInput, match="no id column 'id'"):
        read_rows(path, SCHEMA)
    path.write_text("id,Age,Color,Hours\na,1,red,2\n")
    with pytest.raises(InvalidInput, match=r"unknown feature name.*'Color'"):
        read_rows(path, SCHEMA)


def test_a_category_named_like_a_number_is_read_as_that_name(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,Age,Colour,Hours\na,1,1.5,2\nb,1,1,2\n")
    assert read_rows(path, SCHEMA).X[:, 1].tolist() == [2.0, 1.0]  # "1.5" is category 2; "1" is code 1


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"\xef\xbb\xbfid,Age,Colour,Hours\r\na,1,red,2\r\n")
    rows = read_rows(path, SCHEMA)
    assert rows.ids == ["a"] and rows.X.tolist() == [[1.0, 0.0, 2.0]]
