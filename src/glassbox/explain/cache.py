"""An LRU cache of explanations keyed by (model version, instance, parameters, seed[, methods]).

An explanation is a pure function of that key (see ``core``), so a hit is exactly what a rerun would
give, at dictionary-lookup cost instead of ~25 model calls. ``ExplanationCache`` lives in one process;
``redis_cache.RedisExplanationCache`` is shared by every worker and replica.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np
from cachetools import LRUCache

from glassbox.contract.explanations import ExplainMethods
from glassbox.explain.params import ExplainParams

CacheKey = tuple


def cache_key(
    model_version: str,
    instance: np.ndarray,
    params: ExplainParams,
    seed: int,
    methods: ExplainMethods | None = None,
) -> CacheKey:
    # The row's float64 bytes: exact, and cheaper to hash than a tuple of floats.
    row = np.ascontiguousarray(instance, dtype=np.float64).tobytes()
    if methods is None or methods.anchors_only:  # anchors alone: the key it always had
        return (model_version, row, params.key(), seed)
    return (model_version, row, params.key(), seed, methods.key())


class Cache(Protocol):
    """What the service needs of a cache (``ExplanationCache`` or ``RedisExplanationCache``)."""

    def get_many(self, keys: list[CacheKey]) -> list[dict[str, Any] | None]: ...

    def put(self, key: CacheKey, record: dict[str, Any]) -> None: ...


class ExplanationCache:
    """A thread-safe ``cachetools.LRUCache``; ``size=0`` disables caching."""

    def __init__(self, size: int):
        self._cache: LRUCache | None = LRUCache(maxsize=size) if size > 0 else None
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> dict[str, Any] | None:
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(key)

    def get_many(self, keys: list[CacheKey]) -> list[dict[str, Any] | None]:
        return [self.get(key) for key in keys]

    def put(self, key: CacheKey, record: dict[str, Any]) -> None:
        if self._cache is None:
            return
        with self._lock:
            self._cache[key] = record

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else 0
