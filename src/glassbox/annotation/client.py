"""The queue's HTTP client: what ``glassbox queue ...``, ``audit-labels`` and the benchmark call.

Every failure becomes a ``GlassboxError`` with a message a person can act on: the service's own
``{"error": ...}`` with its status, or "cannot reach the queue at <url>" when nothing answers, so
the CLI never shows a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from glassbox.errors import GlassboxError, InvalidInput, UpstreamUnavailable

API = "/api/v1"


class QueueClientSettings(BaseSettings):
    """Where the ``glassbox queue`` commands find the running queue, and as whom they call it."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_QUEUE_", extra="ignore")

    url: str = Field("http://127.0.0.1:8500", description="Base URL of the running queue service.")
    api_key: str = Field("", description="The caller's API key, sent as the X-API-Key header.")
    client_timeout: float = Field(60.0, gt=0, description="Seconds the CLI waits for one answer.")


def _reason(exc: requests.RequestException) -> str:
    """The short cause inside requests' long exception text ("Connection refused", a timeout)."""
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    found = re.search(r"\[Errno -?\d+\] ([^'\"\)]+)", str(exc))
    return found.group(1).strip() if found else str(exc)


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    text = " ".join(response.text.split())[:200] or response.reason or "no body"
    return f"{text} (not the queue's JSON error: is this URL the queue?)"


class QueueClient:
    def __init__(
        self, url: str, api_key: str, timeout: float = 60.0, session: requests.Session | None = None
    ):
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"queue URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = session or requests.Session()

    # -- transport --------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method`` ``/api/v1<path>``; a 4xx/5xx or no answer raises ``GlassboxError``."""
        try:
            response = self.session.request(
                method,
                f"{self.url}{API}{path}",
                headers={"X-API-Key": self.api_key},
                timeout=self.timeout,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise UpstreamUnavailable(
                f"cannot reach the queue at {self.url} ({_reason(exc)}): is `glassbox queue serve` running "
                "there? Set --url or GLASSBOX_QUEUE_URL"
            ) from None
        if response.status_code >= 400:
            raise GlassboxError(
                f"the queue at {self.url} answered {response.status_code} to {method} {API}{path}: "
                f"{_error_message(response)}",
                response.status_code,
            )
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of ``request`` (``None`` for 204)."""
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GlassboxError(
                f"the queue at {self.url} answered {method} {API}{path} with something that is not JSON: "
                f"{response.text[:200]!r}",
                502,
            ) from None

    # -- intake -----------------------------------------------------------------------------
    def send_bulk(self, records: Sequence[dict[str, Any]], batch: int = 500) -> dict[str, Any]:
        """Send ``records`` in bulks of ``batch``; returns the summed answer (error indexes are global)."""
        total: dict[str, Any] = {"created": 0, "existing": 0, "errors": []}
        for start in range(0, len(records), batch):
            answer = self.call(
                "POST", "/records/bulk", json={"records": list(records[start : start + batch])}
            )
            total["created"] += answer["created"]
            total["existing"] += answer["existing"]
            total["errors"] += [{**e, "index": e["index"] + start} for e in answer["errors"]]
        return total

    # -- review -----------------------------------------------------------------------------
    def list_records(self, query: dict[str, str]) -> dict[str, Any]:
        return self.call("GET", "/records", params=query)

    def get_record(self, record_id: str) -> dict[str, Any]:
        return self.call("GET", f"/records/{quote(record_id, safe='')}")

    def respond(self, record_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/records/{quote(record_id, safe='')}/responses", json=body)

    def agreement(self) -> dict[str, Any]:
        return self.call("GET", "/agreement")

    def lineage(self, record_or_request_id: str) -> dict[str, Any]:
        return self.call("GET", f"/lineage/{quote(record_or_request_id, safe='')}")

    def export(self, fmt: str, output: Path, lineage: bool = False) -> tuple[int, int]:
        """Write the export to ``output`` (whole or not at all); returns (exported, skipped unlabelled).

        ``lineage`` adds each record's lineage (a nested object in JSONL, a JSON column in CSV).
        """
        params = {"format": fmt, "lineage": "true" if lineage else "false"}
        response = self.request("GET", "/export", params=params, stream=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(f".{output.name}.partial")
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
        except requests.RequestException as exc:
            partial.unlink(missing_ok=True)
            raise UpstreamUnavailable(f"the export from {self.url} broke off: {_reason(exc)}") from None
        os.replace(partial, output)
        headers = response.headers
        return int(headers.get("X-Glassbox-Exported", 0)), int(
            headers.get("X-Glassbox-Skipped-Unlabelled", 0)
        )

    # -- settings and users -----------------------------------------------------------------
    def get_settings(self) -> dict[str, Any]:
        return self.call("GET", "/settings")

    def put_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("PUT", "/settings", json=body)

    def list_users(self) -> list[dict[str, Any]]:
        return self.call("GET", "/users")["users"]

    def create_user(self, name: str, role: str) -> dict[str, Any]:
        return self.call("POST", "/users", json={"name": name, "role": role})

    def delete_user(self, name: str) -> None:
        self.call("DELETE", f"/users/{quote(name, safe='')}")

    def update_user(self, name: str, **changes: Any) -> dict[str, Any]:
        return self.call("PATCH", f"/users/{quote(name, safe='')}", json=changes)

    # -- webhooks (owner) ---------------------------------------------------------------------
    def create_webhook(self, url: str, events: Sequence[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url} if events is None else {"url": url, "events": list(events)}
        return self.call("POST", "/webhooks", json=body)

    def list_webhooks(self) -> list[dict[str, Any]]:
        return self.call("GET", "/webhooks")["webhooks"]

    def get_webhook(self, webhook_id: str) -> dict[str, Any]:
        return self.call("GET", f"/webhooks/{quote(webhook_id, safe='')}")

    def delete_webhook(self, webhook_id: str) -> None:
        self.call("DELETE", f"/webhooks/{quote(webhook_id, safe='')}")
