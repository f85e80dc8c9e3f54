"""Export reviewed records as JSONL or CSV. Records without a final label are skipped and counted."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from glassbox.annotation.lineage import lineage_of
from glassbox.contract.records import FEATURE_PREFIX
from glassbox.errors import InvalidInput

FORMATS = ("jsonl", "csv")
# CSV columns before the features; nested fields (decoded, metadata, responses) go as JSON text.
CSV_COLUMNS = (
    "id", "source", "status", "final_label", "predicted_label", "model_name", "model_version",
    "request_id", "timestamp", "row_index", "loss", "responses", "decoded", "metadata",
)  # fmt: skip


@dataclass
class ExportStats:
    exported: int = 0
    skipped_unlabelled: int = 0


def _labelled(records: Iterable[dict[str, Any]], stats: ExportStats) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.get("final_label") is None:
            stats.skipped_unlabelled += 1
            continue
        stats.exported += 1
        yield record


def export_jsonl(
    records: Iterable[dict[str, Any]], stats: ExportStats, lineage: bool = False
) -> Iterator[str]:
    for record in _labelled(records, stats):
        if lineage:
            record = {**record, "lineage": lineage_of(record)}
        yield json.dumps(record, separators=(",", ":")) + "\n"


def export_csv(records: Iterable[dict[str, Any]], stats: ExportStats, lineage: bool = False) -> Iterator[str]:
    """One row per record; ``lineage`` adds a ``lineage`` column (JSON text) before the features."""
    buffer = io.StringIO()
    writer: csv.writer | None = None
    feature_names: list[str] = []
    for record in _labelled(records, stats):
        if writer is None:  # the header takes the feature names of the first record
            feature_names = list(record["features"])
            writer = csv.writer(buffer)
            extra = ["lineage"] if lineage else []
            writer.writerow([*CSV_COLUMNS, *extra, *(FEATURE_PREFIX + name for name in feature_names)])
        metadata = record.get("metadata") or {}
        writer.writerow(
            [
                record["id"], record["source"], record["status"], record["final_label"],
                record["predicted_label"], record["model_name"], record["model_version"],
                record["request_id"], record["timestamp"], metadata.get("row_index", ""),
                metadata.get("loss", ""), json.dumps(record.get("responses", [])),
                json.dumps(record.get("decoded") or {}), json.dumps(metadata),
                *([json.dumps(lineage_of(record), separators=(",", ":"))] if lineage else []),
                *(record["features"].get(name, "") for name in feature_names),
            ]
        )  # fmt: skip
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def export_lines(
    records: Iterable[dict[str, Any]], fmt: str, stats: ExportStats, lineage: bool = False
) -> Iterator[str]:
    if fmt == "jsonl":
        return export_jsonl(records, stats, lineage)
    if fmt == "csv":
        return export_csv(records, stats, lineage)
    raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
