"""Tumbling windows of rows: by count (every N rows) and by time (every T seconds).

Both keep the rows' features and predicted classes in preallocated arrays. A count window is full at
exactly its capacity and the rows beyond go to the next one. A time window keeps at most its capacity:
past that, a uniform reservoir sample of everything that arrived in the period (Vitter's algorithm R),
so memory stays bounded however busy the period; its outlier count covers every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Window:
    kind: str  # "count" | "time"
    capacity: int
    width: int
    started_at: float
    seen: int = 0  # rows that arrived (a time window may keep fewer)
    outliers: int = 0
    X: np.ndarray = field(init=False)
    predicted: np.ndarray = field(init=False)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __post_init__(self) -> None:
        self.X = np.empty((self.capacity, self.width))
        self.predicted = np.empty(self.capacity, dtype=np.intp)

    @property
    def kept(self) -> int:
        return min(self.seen, self.capacity)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X[: self.kept], self.predicted[: self.kept]

    def add(self, X: np.ndarray, predicted: np.ndarray, outliers: np.ndarray) -> None:
        """Add rows (a count window must have room for them: see ``room``)."""
        n = len(X)
        free = max(0, self.capacity - self.seen)
        take = min(free, n)
        self.X[self.seen : self.seen + take] = X[:take]
        self.predicted[self.seen : self.seen + take] = predicted[:take]
        if take < n:  # reservoir: row t (0-based overall) replaces a random slot with chance capacity/(t+1)
            t = self.seen + take + np.arange(n - take)
            slots = self.rng.integers(0, t + 1)
            keep = slots < self.capacity
            self.X[slots[keep]] = X[take:][keep]
            self.predicted[slots[keep]] = predicted[take:][keep]
        self.seen += n
        self.outliers += int(np.count_nonzero(outliers))

    def room(self) -> int:
        return self.capacity - self.seen

    def reset(self, now: float) -> None:
        self.seen = self.outliers = 0
        self.started_at = now
