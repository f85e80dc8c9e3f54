"""Seldon feedback for reviewed predictions: the model learns its live accuracy on reviewed traffic.

Sending is idempotent by record: a record is sent only while ``feedback_sent_at`` is empty, and one
sender thread does the sending, woken at each completion and every ``feedback_sweep_seconds`` (which
also catches what failed or was pending at a restart). HTTP retries are urllib3's ``Retry``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from glassbox.annotation.explanations import seldon_request

log = logging.getLogger(__name__)


def feedback_payload(record: dict[str, Any]) -> dict[str, Any]:
    """Seldon's feedback body for a completed prediction record: request, response, truth, reward."""
    classes = list(record["probabilities"])
    return {
        "request": seldon_request(record),
        "response": {
            "data": {"names": classes, "ndarray": [list(record["probabilities"].values())]},
            "meta": {"puid": record["request_id"]},
        },
        "truth": {
            "data": {"names": classes, "ndarray": [[float(c == record["final_label"]) for c in classes]]}
        },
        "reward": int(record["final_label"] == record["predicted_label"]),
    }


def retrying_session(retries: int) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # POST too: resending feedback for one record before it is marked is harmless
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class FeedbackSender:
    """Posts feedback for completed prediction records and records that it was sent."""

    def __init__(
        self,
        store,
        url: str,
        retries: int = 3,
        timeout: float = 10.0,
        on_sent: Callable[[int], object] = lambda reward: None,
    ):
        self.store = store
        self.on_sent = on_sent
        self.url = f"{url.rstrip('/')}/api/v1.0/feedback" if url else ""
        self.timeout = timeout
        self._session = retrying_session(retries)
        self._lock = threading.Lock()  # one send pass at a time: no record is sent twice concurrently

    def send_due(self) -> int:
        """Send every due record; returns how many reached the model."""
        if not self.url:
            return 0
        sent = 0
        with self._lock:
            for record in self.store.feedback_due():
                payload = feedback_payload(record)
                try:
                    answer = self._session.post(self.url, json=payload, timeout=self.timeout)
                    answer.raise_for_status()
                except requests.RequestException as exc:
                    log.warning("feedback for %s failed: %s", record["id"], exc)
                    self.store.mark_feedback(record["id"], sent=False, error=str(exc)[:500])
                    continue
                self.store.mark_feedback(record["id"], sent=True)
                self.on_sent(payload["reward"])
                sent += 1
        return sent


class Sweeper:
    """A daemon thread that runs ``work`` when woken and every ``interval`` seconds until stopped."""

    def __init__(self, work: Callable[[], object], interval: float):
        self._work = work
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._work()
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("queue sweep failed")
            self._wake.wait(self._interval)
            self._wake.clear()
