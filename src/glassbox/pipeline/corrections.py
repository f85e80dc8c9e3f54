"""Read a queue export and apply its reviewed labels to a training dataset.

``training-audit`` records correct the label of their training row (``metadata.row_index``);
``prediction`` records, if asked, become new training rows with the reviewed label. Everything
applied, and everything skipped with its reason, is summarised for the model card.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.contract.records import FEATURE_PREFIX
from glassbox.errors import InvalidInput
from glassbox.pipeline.data import Dataset


@dataclass
class Corrections:
    """What an export says: label fixes by training row, and reviewed predictions."""

    source: str
    sha256: str
    relabel: dict[int, str] = field(default_factory=dict)  # row_index -> reviewed label
    audit_versions: dict[int, str] = field(default_factory=dict)  # row_index -> audited data version
    predictions: list[tuple[str, dict[str, float], str]] = field(
        default_factory=list
    )  # (id, features, label)
    unlabelled: int = 0


def read_export(path: str | Path) -> Corrections:
    """Parse a JSONL or CSV export (by extension); records without a final label are counted, not used."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"corrections file not found: {path}") from None
    rows = _csv_rows(content) if path.suffix.lower() == ".csv" else _jsonl_rows(content, path)
    found = Corrections(source=str(path), sha256=hashlib.sha256(content).hexdigest())
    for line, record in rows:
        label = record.get("final_label")
        if not label:
            found.unlabelled += 1
            continue
        if record.get("source") == "training-audit":
            row_index = (record.get("metadata") or {}).get("row_index")
            if not isinstance(row_index, int):
                raise InvalidInput(
                    f"{path}:{line}: training-audit record {record.get('id')!r} has no metadata.row_index"
                )
            found.relabel[row_index] = label
            found.audit_versions[row_index] = str(record.get("model_version", ""))
        elif record.get("source") == "prediction":
            found.predictions.append((str(record.get("id")), record["features"], label))
    return found


def _jsonl_rows(content: bytes, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, text in enumerate(content.decode("utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            rows.append((line, json.loads(text)))
        except ValueError as exc:
            raise InvalidInput(f"{path}:{line}: not a JSON record: {exc}") from None
    return rows


def _csv_rows(content: bytes) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, row in enumerate(csv.DictReader(content.decode("utf-8").splitlines()), start=2):
        metadata = json.loads(row.get("metadata") or "{}")
        features = {
            k.removeprefix(FEATURE_PREFIX): float(v) for k, v in row.items() if k.startswith(FEATURE_PREFIX)
        }
        rows.append((line, {**row, "metadata": metadata, "features": features}))
    return rows


def apply_corrections(
    data: Dataset, corrections: Corrections, include_predictions: bool = False
) -> tuple[Dataset, dict[str, Any]]:
    """A copy of ``data`` with reviewed labels applied (and reviewed predictions appended if asked).

    Returns the new dataset and the summary the model card records.
    """
    position = {int(r): i for i, r in enumerate(data.row_index.tolist())}
    label_code = {name: code for code, name in enumerate(data.class_names)}
    expected_version = f"data-{data.data_sha256[:12]}"
    y = data.y.copy()
    changed, confirmed, skipped = [], 0, []
    for row_index, label in sorted(corrections.relabel.items()):
        version = corrections.audit_versions.get(row_index, "")
        if version.startswith("data-") and version != expected_version:
            skipped.append({"row_index": row_index, "reason": f"audited on other data ({version})"})
            continue
        if row_index not in position:
            skipped.append({"row_index": row_index, "reason": "no such training row"})
            continue
        if label not in label_code:
            raise InvalidInput(f"row {row_index}: reviewed label {label!r} is not one of {data.class_names}")
        i = position[row_index]
        if y[i] == label_code[label]:
            confirmed += 1
            continue
        changed.append({"row_index": row_index, "from": data.class_names[int(y[i])], "to": label})
        y[i] = label_code[label]
    X, row_index_all, added = data.X, data.row_index, []
    if include_predictions and corrections.predictions:
        new_X, new_y = [], []
        for record_id, features, label in corrections.predictions:
            missing = [name for name in data.feature_names if name not in features]
            if missing or label not in label_code:
                why = f"missing features {missing}" if missing else f"label {label!r} not a class"
                skipped.append({"id": record_id, "reason": why})
                continue
            new_X.append([float(features[name]) for name in data.feature_names])
            new_y.append(label_code[label])
            added.append(record_id)
        if new_X:
            X = np.vstack([data.X, np.asarray(new_X, dtype=np.float64)])
            y = np.concatenate([y, np.asarray(new_y, dtype=y.dtype)])
            # New rows get negative row indexes: they are not rows of the source file.
            row_index_all = np.concatenate([data.row_index, -np.arange(1, len(new_X) + 1, dtype=np.int64)])
    summary = {
        "source": corrections.source,
        "sha256": corrections.sha256,
        "labels_corrected": len(changed),
        "labels_confirmed": confirmed,
        "rows_added": len(added),
        "unlabelled_skipped": corrections.unlabelled,
        "corrected": changed,
        "added": added,
        "skipped": skipped,
    }
    return replace(data, X=X, y=y, row_index=row_index_all), summary
