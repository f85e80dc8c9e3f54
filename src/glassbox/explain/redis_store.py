"""The Redis connection of the shared store: bounded timeouts, and every failure a 503 naming Redis.

A request never waits on Redis longer than the socket timeout (plus one quick retry, which covers a
pooled connection that a restarted Redis closed): a stopped or unreachable Redis answers
``StoreUnavailable`` (503) with Redis's address, never a hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from glassbox.explain.stores import StoreUnavailable


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    """One Redis client (thread-safe, pooled) for requests, with the prefix of every key we own."""

    def __init__(self, url: str, prefix: str, socket_timeout_s: float, connect_timeout_s: float):
        self.url = url
        self.prefix = prefix
        self.socket_timeout_s = socket_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.client = self._connect(socket_timeout_s)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def worker_client(self) -> redis.Redis:
        """A separate client for the job worker: rq widens its socket timeout to cover its blocking
        dequeue, which must not loosen the bound on requests."""
        return self._connect(None)

    @contextlib.contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn any Redis failure while ``doing`` into ``StoreUnavailable`` (503) naming Redis."""
        try:
            yield
        except redis.RedisError as exc:
            raise StoreUnavailable(
                f"explanation store unavailable: Redis at {redacted(self.url)} failed while {doing}: "
                f"{exc or type(exc).__name__}"
            ) from exc

    def _connect(self, socket_timeout_s: float | None) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=self.connect_timeout_s,
            # One quick retry (redis-py's default is 3 with up to 10 s of back-off): enough for a pooled
            # connection a restarted Redis closed, short enough to keep the 503 prompt.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            health_check_interval=30,
        )
