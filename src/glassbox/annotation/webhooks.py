"""Webhooks: owners register a URL for queue events; a sender delivers them signed from a durable outbox.

Events (``EVENTS``) are written to ``webhook_deliveries`` in the transaction of the change that
causes them (``store/webhooks.py``). Each worker process runs one ``WebhookSender`` in a ``Sweeper``
thread, woken after each intake and response and every ``webhook_sweep_seconds``. It claims due rows
under a lease and posts each row's stored body (the same bytes at every attempt), signed with
HMAC-SHA256 under the webhook's secret. The outcome: ``delivered`` on a 2xx; a transient failure (no
answer, a 3xx or 5xx, 408/425/429) is due again after a doubling back-off until ``max_attempts``, then
``dead``; any other 4xx is ``dead`` at once (the receiver refuses this delivery; retrying would not
change its mind). Delivery is at least once: receivers deduplicate by ``X-Glassbox-Event-Id``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from glassbox.annotation.feedback import LEASE_MARGIN_SECONDS, TRANSIENT_4XX, backoff_delay
from glassbox.annotation.store.webhooks import WebhookTables
from glassbox.errors import InvalidInput

log = logging.getLogger(__name__)

EVENTS = ("record.created", "response.created", "response.updated", "record.completed")
URL_RULE = (
    "a webhook URL must be https://<host>/..., or http:// to a loopback address (127.0.0.0/8, [::1], "
    "localhost)"
)
MAX_URL_LENGTH = 2000
SIGNATURE_HEADER = "X-Glassbox-Signature"
OUTCOMES = ("delivered", "retry", "dead")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: Any) -> str:
    """``url`` if it is https://, or http:// to a loopback host; else ``InvalidInput`` naming the rule."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or url != url.strip():
        raise InvalidInput(f"{URL_RULE}; got {str(url)[:100]!r}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise InvalidInput(f"{URL_RULE}; {url[:100]!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not host or not (scheme == "https" or (scheme == "http" and _is_loopback(host))):
        raise InvalidInput(f"{URL_RULE}; got {url[:100]!r}")
    return url


def check_events(events: Any) -> list[str]:
    """A non-empty list of known event names, in ``EVENTS`` order, without repeats."""
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidInput(f'"events" must be a non-empty list of some of {list(EVENTS)}')
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidInput(f"unknown event(s) {unknown}; use some of {list(EVENTS)}")
    return [event for event in EVENTS if event in events]


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Glassbox-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(row: dict[str, Any], body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "glassbox-queue-webhooks",
        "X-Glassbox-Event": row["event"],
        "X-Glassbox-Event-Id": row["event_id"],
        "X-Glassbox-Delivery": row["id"],
        "X-Glassbox-Timestamp": str(int(time.time())),
        SIGNATURE_HEADER: signature(row["secret"], body),
    }


class WebhookSender:
    """Claims due deliveries, posts them and records each outcome (one per worker process)."""

    def __init__(
        self,
        store: Any,
        *,
        max_attempts: int = 8,
        backoff: float = 2.0,
        backoff_max: float = 600.0,
        timeout: float = 10.0,
        lease: float = 60.0,
        batch: int = 50,
        on_outcome: Callable[[str], object] = lambda outcome: None,
    ):
        if lease < timeout + LEASE_MARGIN_SECONDS:
            raise ValueError(f"the lease ({lease:g} s) must exceed the timeout by {LEASE_MARGIN_SECONDS:g} s")
        import requests  # here, not at import time: only a running service sends

        self.tables = WebhookTables(store)
        self.max_attempts, self.backoff, self.backoff_max = max_attempts, backoff, backoff_max
        self.timeout, self.lease, self.batch = timeout, lease, batch
        self.on_outcome = on_outcome
        self._requests = requests
        self._session = requests.Session()
        self._lock = threading.Lock()  # one pass per process at a time
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def send_due(self) -> int:
        """Send every due delivery; returns how many were delivered."""
        delivered = 0
        with self._lock:
            while not self._stopping.is_set():
                claimed = self.tables.claim(self.batch, self.lease, self.max_attempts)
                if not claimed:
                    break
                delivered += self._send_claim(claimed)
        return delivered

    def _send_claim(self, claimed: Sequence[dict[str, Any]]) -> int:
        # One post at a time: a receiver sees a webhook's events in the order they happened.
        usable_until = time.monotonic() + self.lease - self.timeout - LEASE_MARGIN_SECONDS
        delivered = 0
        for index, row in enumerate(claimed):
            if self._stopping.is_set() or time.monotonic() > usable_until:
                self.tables.release(claimed[index:])
                break
            delivered += self._attempt(row)
        return delivered

    def _attempt(self, row: dict[str, Any]) -> int:
        status, error, permanent = self._post(row)
        if error is None:
            outcome, finish = "delivered", {}
        elif permanent or row["attempts"] >= self.max_attempts:
            outcome, finish = "dead", {"error": error}
            log.warning(
                "webhook delivery %s is dead after %d attempt(s): %s", row["id"], row["attempts"], error
            )
        else:
            retry_at = time.time() + backoff_delay(row["attempts"], self.backoff, self.backoff_max)
            outcome, finish = "retry", {"error": error, "retry_at": retry_at}
        self.on_outcome(outcome)
        if self.tables.finish(row, status=status, **finish) is None:
            log.warning("webhook delivery %s: its claim had lapsed when the outcome was recorded", row["id"])
        return int(outcome == "delivered")

    def _post(self, row: dict[str, Any]) -> tuple[int | None, str | None, bool]:
        """``(status or None, error or None, permanent)`` for one post."""
        body = row["body"].encode()
        try:
            answer = self._session.post(
                row["url"],
                data=body,
                headers=delivery_headers(row, body),
                timeout=self.timeout,
                allow_redirects=False,  # a redirect could lead anywhere: not to a URL the rule allows
            )
        except self._requests.RequestException as exc:
            return None, f"receiver unreachable: {exc}", False
        code = answer.status_code
        if 200 <= code < 300:
            return code, None, False
        error = f"receiver answered {code}: {answer.text.strip()[:500]}"
        return code, error, 400 <= code < 500 and code not in TRANSIENT_4XX


class _OutboxCollector(Collector):
    """The outbox by state, read from the store at scrape time (shared by every worker and replica)."""

    def __init__(self, tables: WebhookTables):
        self._tables = tables

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "glassbox_queue_webhook_outbox",
            "Webhook deliveries by state: pending (due or backing off), delivered, dead (a 4xx answer or "
            "too many attempts; see GET /api/v1/webhooks/<id>). Shared by all workers: take max(), not sum()",
            labels=["state"],
        )
        for state, n in self._tables.counts().items():
            family.add_metric([state], n)
        yield family


def register_metrics(registry: CollectorRegistry, store: Any) -> Counter:
    """The delivery counter (every outcome exported at 0 from the start) and the outbox gauge."""
    deliveries = Counter(
        "glassbox_queue_webhook_deliveries",
        "Webhook delivery attempts by this process, by outcome: delivered, retry (transient error), dead",
        ["outcome"],
        registry=registry,
    )
    for outcome in OUTCOMES:
        deliveries.labels(outcome)
    registry.register(_OutboxCollector(WebhookTables(store)))
    return deliveries
