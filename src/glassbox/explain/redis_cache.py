"""The explanation cache in Redis: one entry per (model version, row, parameters, seed), for every process.

Entries are JSON under ``<prefix>:cache:<sha256 of the key>`` and expire after ``ttl_s``; how many are
kept is Redis's business (``maxmemory`` with a ``volatile-lru`` policy evicts only keys with a TTL,
which every entry has). One ``MGET`` looks up all rows of a request.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from glassbox.explain.cache import CacheKey
from glassbox.explain.redis_store import RedisStore


def entry_name(key: CacheKey) -> str:
    """A fixed-length name for a cache key; ``repr`` of the key's tuple (strings, bytes, numbers) is
    the same in every process."""
    return hashlib.sha256(repr(key).encode()).hexdigest()


class RedisExplanationCache:
    def __init__(self, store: RedisStore, ttl_s: float, enabled: bool = True):
        self.store = store
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.enabled = enabled

    def get_many(self, keys: list[CacheKey]) -> list[dict[str, Any] | None]:
        if not self.enabled or not keys:
            return [None] * len(keys)
        with self.store.guard("reading cached explanations"):
            values = self.store.client.mget([self._name(key) for key in keys])
        return [json.loads(value) if value is not None else None for value in values]

    def put(self, key: CacheKey, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.store.guard("caching an explanation"):
            self.store.client.set(self._name(key), json.dumps(record), px=self.ttl_ms)

    def _name(self, key: CacheKey) -> str:
        return self.store.key("cache", entry_name(key))
