"""Per-record validation of a bulk intake against the contract's ``IntakeRecord``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from glassbox.contract.records import IntakeRecord

# The record schema is the contract's: one definition for the builders and the queue.
RecordIn = IntakeRecord


def describe_error(exc: ValidationError) -> str:
    """A pydantic error as one line naming each bad field: ``probabilities: ...; source: ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate_bulk(items: list[Any]) -> tuple[list[RecordIn], list[dict[str, Any]]]:
    """Split a bulk body into valid records and per-record errors (``index``, ``id``, ``error``).

    A repeated id inside one bulk is kept once: the second copy is reported as an error so that
    nothing is silently merged.
    """
    valid: list[RecordIn] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        record_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            errors.append({"index": index, "id": None, "error": "record must be a JSON object"})
            continue
        try:
            record = RecordIn.model_validate(item)
        except ValidationError as exc:
            errors.append({"index": index, "id": record_id, "error": describe_error(exc)})
            continue
        if record.id in seen:
            errors.append({"index": index, "id": record.id, "error": "id repeated within this bulk"})
            continue
        seen.add(record.id)
        valid.append(record)
    return valid, errors
