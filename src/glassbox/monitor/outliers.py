"""Outliers to people: review-queue records with ``source="outlier"``, posted to the queue's bulk intake.

The record is the queue's intake record (``glassbox.contract.records.intake_record``) with the row's
prediction as the model answered it, and in ``metadata`` the outlier score, the squared distance and
threshold, the features that carried the distance (their shares), numeric values beyond the training
range and any rare categories. Its id is
``outlier:<request id>:<row>``: an uncertain prediction of the same row keeps its own record.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import requests

from glassbox.contract.labels import Certainty
from glassbox.contract.records import intake_record, timestamp
from glassbox.contract.schema import FeatureSchema
from glassbox.errors import UpstreamUnavailable
from glassbox.pipeline.detectors import Unusual

logger = logging.getLogger(__name__)

BULK_PATH = "/api/v1/records/bulk"
BULK_MAX = 500  # the queue's default GLASSBOX_QUEUE_MAX_BULK


def outlier_records(
    schema: FeatureSchema,
    model_name: str,
    model_version: str,
    request_ids: list[str],
    timestamps: list[float],
    record_of_row: np.ndarray,
    row_in_request: np.ndarray,
    X: np.ndarray,
    probabilities: np.ndarray,
    scores: np.ndarray,
    distances: np.ndarray,
    threshold: float,
    unusual: list[Unusual],
) -> list[dict[str, Any]]:
    """One intake record per outlier row (all arguments are the outlier rows only)."""
    certainty = Certainty.of(probabilities)
    records = []
    for i in range(len(X)):
        request_id = request_ids[int(record_of_row[i])]
        row = int(row_in_request[i])
        why = unusual[i]
        rare = {
            name: schema.categories[schema.index[name]][code] for name, code in why.rare_categories.items()
        }
        metadata = {
            "outlier_score": round(float(scores[i]), 4),
            "outlier_distance": round(float(distances[i]), 4),
            "outlier_threshold": round(threshold, 4),
            "unusual_features": why.shares,
            "out_of_range": why.out_of_range,
            "rare_categories": rare,
        }
        records.append(
            intake_record(
                record_id=f"outlier:{request_id}:{row}",
                source="outlier",
                schema=schema,
                row=X[i],
                probabilities=probabilities[i],
                certainty=certainty,
                index=i,
                model_name=model_name,
                model_version=model_version,
                request_id=request_id,
                created=timestamp(timestamps[int(record_of_row[i])]),
                metadata=metadata,
            )
        )
    return records


class QueueClient:
    """Posts outlier records to the queue; raises ``UpstreamUnavailable`` unless the queue took them."""

    def __init__(self, url: str, api_key: str, timeout: float):
        self.url = url.rstrip("/") + BULK_PATH
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": api_key})

    def send(self, records: list[dict[str, Any]]) -> int:
        """Deliver every record; returns how many the queue accepted (created or already there)."""
        accepted = 0
        for start in range(0, len(records), BULK_MAX):
            chunk = records[start : start + BULK_MAX]
            try:
                answer = self.session.post(self.url, json={"records": chunk}, timeout=self.timeout)
            except requests.RequestException as exc:
                raise UpstreamUnavailable(f"review queue unreachable ({exc}); send the rows again") from None
            if answer.status_code != 200:
                raise UpstreamUnavailable(
                    f"review queue answered {answer.status_code} to the outliers: {answer.text:.200}; "
                    "send the rows again"
                )
            errors = answer.json().get("errors") or []
            for error in errors:  # invalid for the queue: resending cannot help, so log it
                logger.error("review queue refused outlier %s: %s", error.get("id"), error.get("error"))
            accepted += len(chunk) - len(errors)
        return accepted
