"""Explanations computed in the background, so that a record's review page opens at once.

Intake stores a record owed an explanation (``explanation_state = 'pending'``, due now) and only wakes
this worker: it never waits for the explainer. Each worker process runs one ``ExplanationWorker`` in a
``Sweeper`` thread, woken at intake and every ``explain_sweep_seconds``. A pass runs ``concurrency``
threads, each claiming one due record at a time (``store/explanations.py``: a lease in the database,
so replicas never compute the same record), asking the explainer and writing the outcome: done; a
transient failure (explainer down, a 5xx) is ``failed`` with its error and due again after a doubling
back-off, until ``max_attempts``; a refusal (a 4xx naming the problem) is ``failed`` for good. A
pending record of a worker that stopped comes due again when its lease runs out, so a restart
resumes every pending explanation.
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

from glassbox.annotation.explanations import ExplainerRefused, fetch_explanation, method_of
from glassbox.annotation.feedback import LEASE_MARGIN_SECONDS, backoff_delay
from glassbox.errors import GlassboxError

log = logging.getLogger(__name__)


class ExplanationWorker:
    """Claims records due an explanation, asks the explainer, stores each outcome."""

    def __init__(
        self,
        store: Any,
        explainer_url: str,
        options: dict[str, Any],
        *,
        timeout: float = 60.0,
        lease: float = 120.0,
        concurrency: int = 2,
        max_attempts: int = 5,
        backoff: float = 10.0,
        backoff_max: float = 600.0,
        on_outcome: Callable[[str], object] = lambda outcome: None,
    ):
        if lease < timeout + LEASE_MARGIN_SECONDS:
            raise ValueError(f"the lease ({lease:g} s) must exceed the timeout by {LEASE_MARGIN_SECONDS:g} s")
        self.store, self.url, self.options = store, explainer_url, options
        self.timeout, self.lease, self.concurrency = timeout, lease, concurrency
        self.max_attempts, self.backoff, self.backoff_max = max_attempts, backoff, backoff_max
        self.on_outcome = on_outcome  # "done" | "retry" | "failed"
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()  # one pass per process at a time
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish the explanations in flight, start no more (claimed ones are handed back)."""
        self._stopping.set()

    def explain_due(self) -> int:
        """Explain every due record, ``concurrency`` at a time; returns how many were stored."""
        if not self.url:
            return 0
        with self._lock:
            if self.concurrency == 1:
                return self._drain()
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="explain") as pool:
                return sum(pool.map(lambda _: self._drain(), range(self.concurrency)))

    def _drain(self) -> int:
        """One lane of a pass: claim one record, explain it, until none is due (or stopping)."""
        done = 0
        while not self._stopping.is_set():
            claimed = self.store.claim_explanations(1, self.lease, self.max_attempts)
            if not claimed:
                break
            done += self._attempt(claimed[0])
        return done

    def _attempt(self, record: dict[str, Any]) -> int:
        if self._stopping.is_set():
            self.store.release_explanations([record])
            return 0
        started = time.monotonic()
        try:
            explanation = fetch_explanation(self.url, record, self.timeout, self.options, self._session)
        except GlassboxError as exc:
            return self._failed(record, exc)
        if not self.store.finish_explanation(record, explanation=explanation, method=method_of(explanation)):
            log.warning("explanation of %s: its claim had lapsed when it was stored", record["id"])
            return 0
        self.on_outcome("done")
        log.info("explained %s in %.2f s", record["id"], time.monotonic() - started)
        return 1

    def _failed(self, record: dict[str, Any], exc: GlassboxError) -> int:
        attempts = record["explanation_attempts"]
        if isinstance(exc, ExplainerRefused) or attempts >= self.max_attempts:
            outcome, retry_at = "failed", None
            log.warning("explanation of %s failed for good (attempt %d): %s", record["id"], attempts, exc)
        else:
            outcome = "retry"
            retry_at = time.time() + backoff_delay(attempts, self.backoff, self.backoff_max)
            log.info("explanation of %s failed (attempt %d), retried later: %s", record["id"], attempts, exc)
        self.on_outcome(outcome)
        self.store.finish_explanation(record, error=exc.message, retry_at=retry_at)
        return 0
