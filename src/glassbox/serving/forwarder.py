"""Send uncertain rows to the annotation queue without ever slowing down or failing a prediction.

The same machinery (its own buffer, thread and outbox file) sends a sample of every prediction to the
drift and outlier monitor (``glassbox.monitor``); ``target`` names the receiver in logs.

Requests only append to a bounded in-memory buffer. One background thread per process takes
batches from it, formats the records and posts them to the queue's bulk intake. When the queue
cannot take them, the records go to the durable ``Outbox`` and are retried from there with
exponential back-off, oldest first. Nothing is dropped unless the outbox itself is full, and that
is counted and logged.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from glassbox.contract.records import UncertainRows
from glassbox.serving.outbox import Outbox
from glassbox.serving.settings import ModelSettings

logger = logging.getLogger(__name__)

BULK_PATH = "/api/v1/records/bulk"
DEPTH_REFRESH_SECONDS = 5.0  # other processes share the outbox: re-read its depth now and then


@dataclass
class ForwardStats:
    """Running totals since the process started (the metrics layer turns them into counters)."""

    forwarded: int = 0  # records the queue accepted (created or already there)
    retries: int = 0  # records re-sent from the outbox after an earlier failure
    spilled: int = 0  # records written to the outbox
    dropped: int = 0  # records lost because the outbox was full
    rejected: int = 0  # records the queue refused as invalid (logged; resending cannot help)
    outbox_depth: int = 0


class Forwarder:
    """Bounded buffer + background sender + outbox. ``submit`` never blocks on the network."""

    def __init__(
        self,
        settings: ModelSettings,
        outbox: Outbox,
        build: Callable[[UncertainRows], list[tuple[str, str]]],
        *,
        url: str | None = None,
        api_key: str | None = None,
        target: str = "annotation queue",
        permanent_statuses: frozenset[int] = frozenset(),
        batch_rows: int | None = None,
    ):
        """``url``: the endpoint (default the queue's bulk intake); ``permanent_statuses``: answers that
        refuse the records for good (counted as rejected, never retried: resending cannot help);
        ``batch_rows``: buffered rows that make a batch (default ``forward_batch_size``, which also
        caps the records per call)."""
        self.batch_rows = batch_rows or settings.forward_batch_size
        self.url = url if url is not None else settings.queue_url.rstrip("/") + BULK_PATH
        self.api_key = settings.queue_api_key if api_key is None else api_key
        self.target = target
        self.permanent_statuses = permanent_statuses
        self.settings = settings
        self.outbox = outbox
        self.build = build
        self.stats = ForwardStats()
        self._stats_lock = threading.Lock()
        self._buffer: collections.deque[UncertainRows] = collections.deque()
        self._buffered_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._sending: list[tuple[str, str]] = []  # the batch the sender is posting right now
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._depth_checked = 0.0

    # --- request side -------------------------------------------------------------------------

    def submit(self, item: UncertainRows) -> None:
        with self._cond:
            if self._buffered_rows + len(item) <= self.settings.buffer_max_records and not self._stopping:
                idle = not self._buffer
                self._buffer.append(item)
                self._buffered_rows += len(item)
                # Wake the sender only when it sleeps on an empty buffer or a batch is full: waking it
                # on every request (it is lingering for a batch) cost each request a thread switch.
                if idle or self._buffered_rows >= self.batch_rows:
                    self._cond.notify()
                return
        # The sender is behind (or stopping): keep the rows durable rather than hold the request.
        self._spill(self.build(item))

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._refresh_depth()
        queue = self.target == "annotation queue"
        name = "glassbox-forwarder" if queue else f"glassbox-{self.target}-forwarder"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the sender after it has posted the buffer; what it could not post goes to the outbox.

        The sender gets ``timeout`` seconds (a pod's shutdown grace is short); a batch it is still
        posting then is spilled too (the queue's intake is idempotent by record id), so a queue that
        hangs cannot hold the rows until the process is killed. The outbox is the fallback, not the
        first choice: without a persistent volume it does not outlive the pod.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._spill(list(self._sending))
        leftover = self._take_all()
        if leftover:
            self._spill([r for item in leftover for r in self.build(item)])

    # --- sender thread --------------------------------------------------------------------------

    def _run(self) -> None:
        session = requests.Session()
        session.headers.update({"X-API-Key": self.api_key, "Content-Type": "application/json"})
        while True:
            items = self._take_batch()
            if not items and self._stopping:  # stopping, and every buffered row taken
                return
            try:
                records = [r for item in items for r in self.build(item)]
            except Exception:  # a formatting bug must not stop forwarding; never lose rows silently
                lost = sum(len(item) for item in items)
                logger.exception("could not format %d uncertain rows; dropped", lost)
                self._count(dropped=lost)
                continue
            try:
                if records and self._in_backoff():
                    self._spill(records)  # the queue failed a moment ago: don't wait on it again
                elif records:
                    self._sending = records
                    self._post(session, records)
                    self._sending = []
                if self._stopping:  # the outbox waits for the next start
                    continue
                if not self._in_backoff() and self.stats.outbox_depth > 0:
                    self._drain(session)
                if time.monotonic() - self._depth_checked > DEPTH_REFRESH_SECONDS:
                    self._refresh_depth()
            except Exception:  # the sender must outlive any surprise
                logger.exception("forwarder loop error")
                self._schedule_retry()

    def _take_batch(self) -> list[UncertainRows]:
        with self._cond:
            if not self._buffer and not self._stopping:
                # Sleep until rows arrive; wake for outbox retries when there is a backlog.
                self._cond.wait(self._wait_time())
            if self._buffer and self.settings.forward_linger_seconds > 0:
                # Let a batch fill a little: fewer, bigger bulk calls cost the queue less.
                deadline = time.monotonic() + self.settings.forward_linger_seconds
                while self._buffered_rows < self.batch_rows and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            taken, rows = [], 0
            while self._buffer and rows < self.batch_rows:
                item = self._buffer.popleft()
                taken.append(item)
                rows += len(item)
            self._buffered_rows -= rows
            return taken

    def _take_all(self) -> list[UncertainRows]:
        with self._cond:
            items = list(self._buffer)
            self._buffer.clear()
            self._buffered_rows = 0
            return items

    def _wait_time(self) -> float:
        if self.stats.outbox_depth > 0:
            return max(0.0, self._next_attempt - time.monotonic()) or 0.01
        return DEPTH_REFRESH_SECONDS

    def _post(self, session: requests.Session, records: list[tuple[str, str]]) -> None:
        """Deliver fresh records in bulk calls; whatever a failed call could not deliver is spilled."""
        size = self.settings.forward_batch_size
        for start in range(0, len(records), size):
            if not self._send(session, records[start : start + size]):
                self._spill(records[start:])
                return

    def _send(self, session: requests.Session, chunk: list[tuple[str, str]]) -> bool:
        body = '{"records": [' + ", ".join(text for _, text in chunk) + "]}"
        try:
            response = session.post(
                self.url, data=body.encode(), timeout=self.settings.forward_timeout_seconds
            )
        except requests.RequestException as exc:
            logger.warning("%s unreachable (%s); records wait in the outbox", self.target, exc)
            self._schedule_retry()
            return False
        if response.status_code in self.permanent_statuses:
            logger.error("%s refused %d records: %s %.300s", self.target, len(chunk), response.status_code,
                         response.text)  # fmt: skip
            self._count(rejected=len(chunk))
            self._backoff = 0.0
            return True  # delivered as far as it ever can be: out of the buffer and the outbox
        if response.status_code != 200:
            logger.warning("%s answered %s: %.300s", self.target, response.status_code, response.text)
            self._schedule_retry()
            return False
        self._accepted(chunk, response)
        self._backoff = 0.0
        return True

    def _accepted(self, chunk: list[tuple[str, str]], response: requests.Response) -> None:
        try:
            errors = response.json().get("errors") or []
        except ValueError:
            errors = []
        for error in errors:
            logger.error("%s refused record %s: %s", self.target, error.get("id"), error.get("error"))
        self._count(rejected=len(errors), forwarded=len(chunk) - len(errors))

    def _drain(self, session: requests.Session) -> None:
        records = self.outbox.claim(self.settings.forward_batch_size)
        if not records:  # another process holds them under lease: look again in a second
            self._refresh_depth()
            self._next_attempt = time.monotonic() + 1.0
            return
        ids = [record_id for record_id, _ in records]
        self._count(retries=len(records))
        if self._send(session, records):
            self.outbox.delete(ids)
        else:
            self.outbox.release(ids)
        self._refresh_depth()

    def _spill(self, records: list[tuple[str, str]]) -> None:
        if not records:
            return
        try:
            stored, dropped = self.outbox.add(records)
        except sqlite3.Error:  # disk full, unwritable directory: say so, and count what is lost
            logger.exception("outbox %s unwritable: dropped %d records", self.outbox.path, len(records))
            self._count(dropped=len(records))
            return
        self._count(spilled=stored, dropped=dropped)
        if dropped:
            logger.error("outbox full (%d records): dropped %d records", self.outbox.max_records, dropped)
        self._refresh_depth()

    def _count(self, **increments: int) -> None:
        with self._stats_lock:  # the request thread spills too when the buffer is full
            for name, n in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _refresh_depth(self) -> None:
        self.stats.outbox_depth = self.outbox.depth()
        self._depth_checked = time.monotonic()

    def _in_backoff(self) -> bool:
        return time.monotonic() < self._next_attempt

    def _schedule_retry(self) -> None:
        s = self.settings
        self._backoff = min(
            s.retry_max_seconds, self._backoff * 2 if self._backoff else s.retry_initial_seconds
        )
        self._next_attempt = time.monotonic() + self._backoff
