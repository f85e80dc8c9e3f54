"""A small HTTP client for the queue's intake, used by ``audit-labels`` and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from glassbox.errors import GlassboxError, UpstreamUnavailable


class QueueClient:
    def __init__(
        self, url: str, api_key: str, timeout: float = 60.0, session: requests.Session | None = None
    ):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = session or requests.Session()

    def send_bulk(self, records: Sequence[dict[str, Any]], batch: int = 500) -> dict[str, Any]:
        """Send ``records`` in bulks of ``batch``; returns the summed answer (error indexes are global)."""
        total: dict[str, Any] = {"created": 0, "existing": 0, "errors": []}
        for start in range(0, len(records), batch):
            answer = self._post_bulk(records[start : start + batch])
            total["created"] += answer["created"]
            total["existing"] += answer["existing"]
            total["errors"] += [{**e, "index": e["index"] + start} for e in answer["errors"]]
        return total

    def _post_bulk(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        try:
            response = self.session.post(
                f"{self.url}/api/v1/records/bulk",
                json={"records": list(records)},
                headers={"X-API-Key": self.api_key},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"queue at {self.url} unreachable: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise GlassboxError(
                f"queue intake answered {response.status_code}: {message}", response.status_code
            )
        return response.json()
