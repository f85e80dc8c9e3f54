"""Labels from probabilities: the argmax rule every part shares, and how sure the model is about each row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def argmax_like_sklearn(probabilities: np.ndarray) -> np.ndarray:
    """Class index per row; exact ties (0.5/0.5 in float32 noise) go to the first class, as in sklearn."""
    return np.argmax(np.round(probabilities, 6), axis=1)


@dataclass(frozen=True)
class Certainty:
    """Per-row certainty of a ``(rows, classes)`` probability matrix; all arrays have one value per row."""

    max_probability: np.ndarray
    margin: np.ndarray
    entropy: np.ndarray  # natural log, so 0.693 is a coin toss between two classes
    predicted: np.ndarray  # index of the most probable class (ties as sklearn breaks them)

    @classmethod
    def of(cls, probabilities: np.ndarray) -> Certainty:
        top2 = -np.partition(-probabilities, 1, axis=1)[:, :2] if probabilities.shape[1] > 1 else None
        max_p = probabilities.max(axis=1)
        margin = top2[:, 0] - top2[:, 1] if top2 is not None else max_p
        clipped = np.clip(probabilities, 1e-12, 1.0)  # 0 * log 0 counts as 0
        entropy = -(probabilities * np.log(clipped)).sum(axis=1)
        return cls(max_p, margin, entropy, argmax_like_sklearn(probabilities))

    def uncertain_rows(self, threshold: float) -> np.ndarray:
        """Indices of the rows whose highest probability is below ``threshold``."""
        return np.flatnonzero(self.max_probability < threshold)
