"""Queue records are built as JSON text from templates: they must parse to exactly the contract's record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glassbox.contract.labels import Certainty
from glassbox.contract.records import RecordBuilder, UncertainRows
from glassbox.contract.schema import FeatureSchema, decode_row


@pytest.fixture(scope="module")
def schema(trained_artifacts) -> FeatureSchema:
    from glassbox.pipeline.artifacts import read_manifest, resolve_version_dir

    return FeatureSchema.from_manifest(read_manifest(resolve_version_dir(trained_artifacts)))


def test_records_parse_to_the_contract(schema, adult_test_rows):
    X = adult_test_rows[:30]
    P = np.column_stack([np.linspace(0.5, 0.99, 30), 1 - np.linspace(0.5, 0.99, 30)])
    certainty = Certainty.of(P)
    rows = certainty.uncertain_rows(0.7)
    item = UncertainRows.select('req "7"', rows, X, P, certainty, now=1_790_000_000.25)
    built = RecordBuilder(schema, "loanclassifier", "v1").build(item)

    assert [record_id for record_id, _ in built] == [f'req "7":{r}' for r in rows]
    for (record_id, text), r in zip(built, rows, strict=True):
        record = json.loads(text)
        assert record["id"] == record_id and record["request_id"] == 'req "7"'
        assert record["features"] == dict(zip(schema.feature_names, X[r].tolist(), strict=True))
        assert record["decoded"] == decode_row(X[r], schema.feature_names, schema.categories)
        assert record["probabilities"] == dict(zip(schema.class_names, P[r].tolist(), strict=True))
        assert record["predicted_label"] == schema.class_names[0]
        assert record["certainty"] == pytest.approx(
            {"max_probability": P[r].max(), "margin": P[r, 0] - P[r, 1], "entropy": certainty.entropy[r]}
        )
        assert record["timestamp"] == "2026-09-21T14:13:20.250000Z"
        assert (record["source"], record["model_name"], record["model_version"]) == (
            "prediction",
            "loanclassifier",
            "v1",
        )
        assert record["explanation"] is None and record["metadata"] == {}
