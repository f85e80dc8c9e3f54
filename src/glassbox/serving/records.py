"""Queue records (docs/contracts.md, "Queue intake") for the rows the model was unsure about."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from glassbox.serving.schema import FeatureSchema
from glassbox.serving.uncertainty import Certainty

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
        timestamp = '"' + datetime.fromtimestamp(item.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + '"'
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
                timestamp,
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
