"""The record format of the intake (docs/contracts.md) and its per-record validation."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SOURCES = ("prediction", "training-audit")
STATUSES = ("pending", "completed", "discarded")


class Certainty(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_probability: float = Field(ge=0, le=1)
    margin: float = Field(ge=0, le=1)
    entropy: float = Field(ge=0)


class RecordIn(BaseModel):
    """One record as the model component (or the label audit) sends it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    source: Literal["prediction", "training-audit"]
    features: dict[str, float] = Field(min_length=1)
    decoded: dict[str, Any] = Field(default_factory=dict)
    probabilities: dict[str, float] = Field(min_length=2)
    predicted_label: str
    certainty: Certainty
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    request_id: str = ""
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    explanation: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _finite_features(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, x in value.items() if not math.isfinite(x)]
        if bad:
            raise ValueError(f"features must be finite numbers; not: {', '.join(bad)}")
        return value

    @field_validator("probabilities")
    @classmethod
    def _valid_probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not (0.0 <= p <= 1.0) for p in value.values()):
            raise ValueError("every probability must lie in [0, 1]")
        if abs(sum(value.values()) - 1.0) > 1e-3:
            raise ValueError(f"probabilities must sum to 1 (they sum to {sum(value.values()):.4f})")
        return value

    @field_validator("metadata")
    @classmethod
    def _numeric_loss(cls, value: dict[str, Any]) -> dict[str, Any]:
        loss = value.get("loss")
        if loss is not None and not (isinstance(loss, int | float) and math.isfinite(loss)):
            raise ValueError("metadata.loss must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RecordIn:
        if self.predicted_label not in self.probabilities:
            raise ValueError(
                f"predicted_label {self.predicted_label!r} is not one of the classes "
                f"{sorted(self.probabilities)} in probabilities"
            )
        if self.timestamp.tzinfo is None:
            self.timestamp = self.timestamp.replace(tzinfo=UTC)
        return self


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
