"""Seldon feedback for reviewed predictions: the model learns its live accuracy on reviewed traffic.

The records table is the outbox (``store/base.py``, "feedback outbox"): a completed prediction record
is owed feedback from the transaction that completed it. Each worker process of each replica runs one
``FeedbackSender`` in a ``Sweeper`` thread, woken at each completion and every
``feedback_sweep_seconds``. A sender claims due rows under a lease, posts each once (``concurrency``
posts in flight), and records the outcome: sent; a transient failure (no answer, a 5xx,
408/425/429) is due again after a doubling back-off, until ``max_attempts``; a permanent one (any
other 4xx: the model refuses this feedback) is dead at once with the model's answer as its error. One
bad row costs one post per attempt and never holds back the rows behind it.

Delivery is at least once, exactly once in practice: a row is posted again only if its sender died
(or lost the database for longer than the lease) between the model's answer and recording it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from glassbox.annotation.explanations import seldon_request
from glassbox.contract.seldon import FEEDBACK_ID_TAG

log = logging.getLogger(__name__)

# 4xx answers that say "later", not "never".
TRANSIENT_4XX = frozenset({408, 425, 429})
# A post starts only while the lease has the post's timeout plus this much left.
LEASE_MARGIN_SECONDS = 5.0


def feedback_payload(record: dict[str, Any]) -> dict[str, Any]:
    """Seldon's feedback body for a completed prediction record: request, response, truth, reward."""
    classes = list(record["probabilities"])
    return {
        "request": seldon_request(record),
        "response": {
            "data": {"names": classes, "ndarray": [list(record["probabilities"].values())]},
            "meta": {"puid": record["request_id"], "tags": {FEEDBACK_ID_TAG: record["id"]}},
        },
        "truth": {
            "data": {"names": classes, "ndarray": [[float(c == record["final_label"]) for c in classes]]}
        },
        "reward": int(record["final_label"] == record["predicted_label"]),
    }


def backoff_delay(attempts: int, first: float, ceiling: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``first``, doubling, at most ``ceiling``."""
    return min(ceiling, first * 2.0 ** min(attempts - 1, 60))


class FeedbackSender:
    """Claims due feedback rows, posts them to the model and records each outcome."""

    def __init__(
        self,
        store,
        url: str,
        *,
        max_attempts: int = 8,
        backoff: float = 2.0,
        backoff_max: float = 600.0,
        timeout: float = 10.0,
        lease: float = 60.0,
        batch: int = 50,
        concurrency: int = 4,
        on_outcome: Callable[[str, int], object] = lambda outcome, reward: None,
    ):
        if lease < timeout + LEASE_MARGIN_SECONDS:
            raise ValueError(f"the lease ({lease:g} s) must exceed the timeout by {LEASE_MARGIN_SECONDS:g} s")
        self.store = store
        self.url = f"{url.rstrip('/')}/api/v1.0/feedback" if url else ""
        self.max_attempts, self.backoff, self.backoff_max = max_attempts, backoff, backoff_max
        self.timeout, self.lease, self.batch, self.concurrency = timeout, lease, batch, concurrency
        self.on_outcome = on_outcome  # (outcome "sent" | "retry" | "dead", reward)
        # No HTTP-level retries (the outbox's back-off is the retry); a connection per post in flight.
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()  # one pass per process at a time
        self._stopping = threading.Event()
        # Outcomes the model gave but the database could not take yet: written first at the next pass,
        # so a database blip does not make a delivered row due again when its lease runs out.
        self._unrecorded: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def stop(self) -> None:
        """Finish the post in flight, hand back the rest of the claim, send nothing more."""
        self._stopping.set()

    def send_due(self) -> int:
        """Send every due row; returns how many reached the model."""
        if not self.url:
            return 0
        sent = 0
        with self._lock:
            self._record_unrecorded()
            while not self._stopping.is_set():
                claimed = self.store.claim_feedback(self.batch, self.lease, self.max_attempts)
                if not claimed:
                    break
                sent += self._send_claim(claimed)
        return sent

    def _send_claim(self, claimed: list[dict[str, Any]]) -> int:
        """Post the claimed rows, ``concurrency`` at a time, while the lease lasts; hand back the rest."""
        usable_until = time.monotonic() + self.lease - self.timeout - LEASE_MARGIN_SECONDS
        skipped: list[dict[str, Any]] = []

        def attempt(record: dict[str, Any]) -> int:
            if self._stopping.is_set() or time.monotonic() > usable_until:
                skipped.append(record)
                return 0
            return self._attempt(record)

        if self.concurrency == 1:
            sent = sum(attempt(record) for record in claimed)
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="feedback") as pool:
                sent = sum(pool.map(attempt, claimed))
        self.store.release_feedback(skipped)
        return sent

    def _attempt(self, record: dict[str, Any]) -> int:
        payload = feedback_payload(record)
        error, permanent = self._post(payload)
        attempts = record["feedback_attempts"]
        if error is None:
            outcome, finish = "sent", {}
        elif permanent or attempts >= self.max_attempts:
            outcome, finish = "dead", {"error": error}
            log.warning("feedback for %s is dead after %d attempt(s): %s", record["id"], attempts, error)
        else:
            retry_at = time.time() + backoff_delay(attempts, self.backoff, self.backoff_max)
            outcome, finish = "retry", {"error": error, "retry_at": retry_at}
            log.info("feedback for %s failed (attempt %d), retried later: %s", record["id"], attempts, error)
        self.on_outcome(outcome, payload["reward"])
        try:
            self._finish(record, finish)
        except Exception:
            self._unrecorded.append((record, finish))
            raise
        return int(outcome == "sent")

    def _post(self, payload: dict[str, Any]) -> tuple[str | None, bool]:
        """``(error or None, permanent)`` for one post."""
        try:
            answer = self._session.post(self.url, json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            return f"model unreachable: {exc}", False
        code = answer.status_code
        if 200 <= code < 300:
            return None, False
        error = f"model answered {code}: {answer.text.strip()[:500]}"
        return error, 400 <= code < 500 and code not in TRANSIENT_4XX

    def _finish(self, record: dict[str, Any], finish: dict[str, Any]) -> None:
        if self.store.finish_feedback(record, **finish) is None:
            log.warning("feedback for %s: its claim had lapsed when the outcome was recorded", record["id"])

    def _record_unrecorded(self) -> None:
        while self._unrecorded:
            record, finish = self._unrecorded[0]
            self._finish(record, finish)
            self._unrecorded.pop(0)


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

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass in progress, waiting at most ``timeout`` seconds for it."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake during it means "run again"
            try:
                self._work()
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("queue sweep failed")
            self._wake.wait(self._interval)
