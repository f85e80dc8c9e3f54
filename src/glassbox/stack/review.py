"""The demo's reviewers: two annotators label forwarded predictions through the queue's HTTP API.

Two labels per record (``min_submitted=2``) give the agreement statistic something to measure, and
each completed record makes the queue send Seldon feedback to the model, which feeds the
dashboard's live accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests

API = "/api/v1"


@dataclass
class ReviewReport:
    records_in_queue: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    agreement: dict = field(default_factory=dict)


class QueueClient:
    """A thin client of the queue's REST API for one API key."""

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = api_key

    def call(self, method: str, path: str, **kwargs) -> dict:
        reply = self.session.request(method, f"{self.base_url}{API}{path}", timeout=60, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"queue {method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json() if reply.content else {}

    def records(self, **filters: str | int) -> dict:
        return self.call("GET", "/records", params=filters)

    def count(self, status: str | None = None, source: str | None = None) -> int:
        filters = {"status": status, "source": source}
        params = {"limit": 1, **{name: value for name, value in filters.items() if value}}
        return int(self.records(**params)["total"])

    def wait_for(self, minimum: int, timeout: float = 30.0, source: str | None = None) -> int:
        """Wait until at least ``minimum`` records (of ``source``, e.g. prediction or outlier) arrived
        (forwarding is asynchronous)."""
        deadline = time.monotonic() + timeout
        total = self.count(source=source)
        while total < minimum and time.monotonic() < deadline:
            time.sleep(0.3)
            total = self.count(source=source)
        return total


def review(base_url: str, owner_key: str, truths: dict[tuple, str], records: int = 6) -> ReviewReport:
    """Two new annotators label up to ``records`` pending records; one of them errs on every third."""
    owner = QueueClient(base_url, owner_key)
    owner.call("PUT", "/settings", json={"min_submitted": 2})
    stamp = time.strftime("%H%M%S")
    reviewers = []
    for name in (f"demo-alice-{stamp}", f"demo-bob-{stamp}"):
        user = owner.call("POST", "/users", json={"name": name, "role": "annotator"})
        reviewers.append(QueueClient(base_url, user["api_key"]))
    report = ReviewReport()
    pending = owner.records(status="pending", limit=records)["records"]
    for n, record in enumerate(pending):
        classes = list(record["probabilities"])
        truth = truths.get(tuple(record["features"].values()), record["predicted_label"])
        for i, reviewer in enumerate(reviewers):
            label = truth if i == 0 or n % 3 else next(c for c in classes if c != truth)
            reviewer.call("POST", f"/records/{record['id']}/responses", json={"label": label})
            report.labelled += 1
    report.agreement = owner.call("GET", "/agreement")  # also publishes glassbox_queue_agreement_alpha
    report.records_in_queue = owner.count()
    report.by_status = {s: owner.count(s) for s in ("pending", "completed", "discarded")}
    return report
