"""The queue's intake record (docs/contracts.md, "Queue intake"): its schema and its builders.

``IntakeRecord`` is what the queue validates; ``RecordBuilder`` formats the model's uncertain rows on
its forwarding thread (templated JSON, fast); ``intake_record`` builds one record as a dict (the label
audit, tests). All three name the same fields, here and nowhere else.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from glassbox.contract.labels import Certainty
from glassbox.contract.schema import FeatureSchema

# Where a record comes from: an uncertain prediction, the label audit, the drift/outlier monitor, a batch
# explanation run (glassbox explain-batch).
SOURCES = ("prediction", "training-audit", "outlier", "batch-explain")
FEATURE_PREFIX = "feature:"  # the queue's CSV export: one column per feature, read back by training
STATUSES = ("pending", "completed", "discarded")

YIELD_EVERY = 8  # records formatted between two GIL hand-overs (about 0.15 ms of work)


@dataclass(frozen=True)
class UncertainRows:
    """What a request hands to the forwarder: numbers only, so the request thread does no formatting."""

    request_id: str
    rows: np.ndarray  # positions of these rows in the request
    features: np.ndarray  # (k, width) encoded features
    probabilities: np.ndarray  # (k, classes)
    max_probability: np.ndarray
    margin: np.ndarray
    entropy: np.ndarray
    predicted: np.ndarray  # class index per row
    created_at: float  # epoch seconds

    @classmethod
    def select(
        cls,
        request_id: str,
        rows: np.ndarray,
        X: np.ndarray,
        probabilities: np.ndarray,
        certainty: Certainty,
        now: float,
    ) -> UncertainRows:
        return cls(
            request_id,
            rows,
            X[rows],
            probabilities[rows],
            certainty.max_probability[rows],
            certainty.margin[rows],
            certainty.entropy[rows],
            certainty.predicted[rows],
            now,
        )

    def __len__(self) -> int:
        return len(self.rows)


class RecordBuilder:
    """Formats ``UncertainRows`` as intake records (JSON text); runs on the sender thread.

    With every row forwarded this runs as often as predictions do, in the same process (and under
    the same GIL) as the request threads. Building dicts and ``json.dumps``-ing them cost more than
    the prediction itself (about 100 µs a record), so each record is one ``%`` format over templates
    prepared once from the schema: field names and category names are JSON-escaped up front, numbers
    go in as ``repr`` (valid JSON for the finite floats validation lets through).
    """

    def __init__(self, schema: FeatureSchema, model_name: str, model_version: str):
        self.schema = schema
        q = json.dumps
        columns = ", ".join(f"{q(name)}: %s" for name in schema.feature_names)
        self._features = "{" + ", ".join(f"{q(name)}: %r" for name in schema.feature_names) + "}"
        self._decoded = "{" + columns + "}"
        self._probabilities = "{" + ", ".join(f"{q(c)}: %r" for c in schema.class_names) + "}"
        self._labels = [q(c) for c in schema.class_names]
        self._category_json = {
            j: np.array([q(c) for c in cs], dtype=object) for j, cs in schema.categories.items()
        }
        self._record = (
            '{"id": %s, "source": "prediction", "features": %s, "decoded": %s, "probabilities": %s, '
            '"predicted_label": %s, "certainty": {"max_probability": %r, "margin": %r, "entropy": %r}, '
            f'"model_name": {q(model_name)}, "model_version": {q(model_version)}, "request_id": %s, '
            '"timestamp": %s, "explanation": null, "metadata": {}}'
        )

    def build(self, item: UncertainRows) -> list[tuple[str, str]]:
        """(record id, record JSON) for every row of ``item``."""
        request_id = json.dumps(item.request_id)
        created = '"' + timestamp(item.created_at) + '"'
        features, probabilities = item.features.tolist(), item.probabilities.tolist()
        certainty = np.column_stack([item.max_probability, item.margin, item.entropy]).tolist()
        columns = [self._decoded_column(item.features[:, j], j) for j in range(self.schema.width)]
        decoded = list(zip(*columns, strict=True))
        built = []
        for k, row in enumerate(item.rows.tolist()):
            text = self._record % (
                f'{request_id[:-1]}:{row}"',  # the id: escaped once with the request id, ":<row>" needs none
                self._features % tuple(features[k]),
                self._decoded % decoded[k],
                self._probabilities % tuple(probabilities[k]),
                self._labels[item.predicted[k]],
                *certainty[k],
                request_id,
                created,
            )
            built.append((f"{item.request_id}:{row}", text))
            if k % YIELD_EVERY == YIELD_EVERY - 1:
                # Hand the GIL to a waiting request thread now rather than at the interpreter's next
                # forced switch (up to 5 ms away): forwarding must not delay predictions.
                time.sleep(0)
        return built

    def _decoded_column(self, values: np.ndarray, column: int) -> list[str]:
        """JSON for one column of every row: category names, or numbers (whole ones as integers)."""
        names = self._category_json.get(column)
        if names is not None:
            return names[values.astype(np.intp)].tolist()
        whole = (values == np.floor(values)).tolist()
        return [repr(int(v)) if w else repr(v) for v, w in zip(values.tolist(), whole, strict=True)]


def timestamp(epoch_seconds: float | None = None) -> str:
    """The record's timestamp format: UTC, microseconds, ``Z``."""
    moment = datetime.now(UTC) if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def intake_record(
    *,
    record_id: str,
    source: str,
    schema: FeatureSchema,
    row: Sequence[float],
    probabilities: Sequence[float],
    certainty: Certainty,
    index: int,
    model_name: str,
    model_version: str,
    request_id: str,
    created: str,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One record as a dict: row ``index`` of ``certainty`` describes ``row`` and ``probabilities``."""
    return {
        "id": record_id,
        "source": source,
        "features": dict(zip(schema.feature_names, [float(v) for v in row], strict=True)),
        "decoded": schema.decode(row),
        "probabilities": dict(zip(schema.class_names, [float(p) for p in probabilities], strict=True)),
        "predicted_label": schema.class_names[int(certainty.predicted[index])],
        "certainty": {
            "max_probability": float(certainty.max_probability[index]),
            "margin": float(certainty.margin[index]),
            "entropy": float(certainty.entropy[index]),
        },
        "model_name": model_name,
        "model_version": model_version,
        "request_id": request_id,
        "timestamp": created,
        "explanation": None,
        "metadata": dict(metadata or {}),
    }


class RecordCertainty(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_probability: float = Field(ge=0, le=1)
    margin: float = Field(ge=0, le=1)
    entropy: float = Field(ge=0)


class IntakeRecord(BaseModel):
    """One record as the model component (or the label audit) sends it; the queue validates with this."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    source: Literal["prediction", "training-audit", "outlier", "batch-explain"]
    features: dict[str, float] = Field(min_length=1)
    decoded: dict[str, Any] = Field(default_factory=dict)
    probabilities: dict[str, float] = Field(min_length=2)
    predicted_label: str
    certainty: RecordCertainty
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
    def _consistent(self) -> IntakeRecord:
        if self.predicted_label not in self.probabilities:
            raise ValueError(
                f"predicted_label {self.predicted_label!r} is not one of the classes "
                f"{sorted(self.probabilities)} in probabilities"
            )
        if self.timestamp.tzinfo is None:
            self.timestamp = self.timestamp.replace(tzinfo=UTC)
        return self
