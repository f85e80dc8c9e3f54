"""Drift tests of one window of rows against the training references (scipy.stats).

Numeric features: two-sample Kolmogorov-Smirnov against the stored training values (asymptotic
p-value; with the ties of integer-valued columns it errs on the conservative side). Categorical
features and the predicted-class mix: chi-squared goodness of fit of the window's counts against the
training proportions, with the categories expected fewer than ``MIN_EXPECTED`` times pooled into one
cell (the chi-squared approximation needs about five per cell; without pooling a rare category seen
once in a small window would flag drift). The per-feature p-values form one family, corrected with
Holm's step-down (or Bonferroni): a window flags any feature with family-wise error ``alpha``.

The statistics are computed here in numpy (the KS reference's distinct values and their CDF once, at
start) and the p-values come from scipy's distributions: the same numbers as ``scipy.stats.ks_2samp``
(``method="asymp"``) and ``scipy.stats.chisquare`` (tests/monitor check it) at a fraction of their call
overhead, which dominated a window's cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from glassbox.pipeline.detectors import Detectors

MIN_EXPECTED = 5.0
CORRECTIONS = ("holm", "bonferroni")


@dataclass(frozen=True)
class WindowResult:
    """The tests of one completed window."""

    rows: int
    p_values: dict[str, float]  # feature -> raw p-value
    drift: dict[str, bool]  # feature -> flagged after the multiple-testing correction
    class_mix_p_value: float
    class_mix_drift: bool
    outliers: int
    closed_at: float  # epoch seconds

    def as_json(self) -> dict:
        return {
            "rows": self.rows,
            "p_values": self.p_values,
            "drift": self.drift,
            "drifted_features": [name for name, flagged in self.drift.items() if flagged],
            "class_mix_p_value": self.class_mix_p_value,
            "class_mix_drift": self.class_mix_drift,
            "outliers": self.outliers,
            "outlier_rate": self.outliers / self.rows if self.rows else 0.0,
            "closed_at": self.closed_at,
        }


class KsReference:
    """One numeric feature's training values, prepared for two-sample KS tests."""

    def __init__(self, sorted_values: np.ndarray):
        self.sorted = np.asarray(sorted_values, dtype=np.float64)
        self.values = np.unique(self.sorted)  # the reference CDF changes only at these
        self.cdf = np.searchsorted(self.sorted, self.values, side="right") / len(self.sorted)

    def p_value(self, window: np.ndarray) -> float:
        """Two-sided asymptotic p-value (Smirnov's distribution, as ``ks_2samp(method="asymp")``)."""
        m, n = len(window), len(self.sorted)
        if m == 0 or n == 0:
            return 1.0
        w = np.sort(window)
        # Both CDFs are steps: the largest gap is at a point of one sample or the other.
        gap_at_reference = np.abs(self.cdf - np.searchsorted(w, self.values, side="right") / m).max()
        at_window = (
            np.searchsorted(self.sorted, w, side="right") / n - np.searchsorted(w, w, side="right") / m
        )
        d = max(float(gap_at_reference), float(np.abs(at_window).max()))
        return float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))


def chi2_p_value(observed: np.ndarray, reference_counts: np.ndarray) -> float:
    """Goodness of fit of ``observed`` counts to the proportions of ``reference_counts``."""
    observed = np.asarray(observed, dtype=np.float64)
    n = observed.sum()
    if n == 0:
        return 1.0
    # A category never seen in training still gets a small expectation (half a training row), so a
    # row of it counts as evidence instead of a division by zero.
    reference = np.asarray(reference_counts, dtype=np.float64) + 0.5
    expected = n * reference / reference.sum()
    small = expected < MIN_EXPECTED
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
        if expected[-1] == 0:
            observed, expected = observed[:-1], expected[:-1]
    if len(observed) < 2:
        return 1.0
    statistic = float((((observed - expected) ** 2) / expected).sum())
    return float(stats.chi2.sf(statistic, len(observed) - 1))


def correct(p_values: np.ndarray, alpha: float, method: str = "holm") -> np.ndarray:
    """Which hypotheses to reject with family-wise error ``alpha`` (Holm's step-down or Bonferroni)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if method == "bonferroni":
        return p <= alpha / m
    if method != "holm":
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    order = np.argsort(p, kind="stable")
    passes = p[order] <= alpha / (m - np.arange(m))
    # Reject the smallest p-values up to the first one that fails its step.
    failed = np.flatnonzero(~passes)
    reject_count = failed[0] if len(failed) else m
    rejected = np.zeros(m, dtype=bool)
    rejected[order[:reject_count]] = True
    return rejected


def evaluate_window(
    detectors: Detectors,
    references: list[KsReference],
    X: np.ndarray,
    predicted: np.ndarray,
    outliers: int,
    alpha: float,
    method: str,
    closed_at: float,
) -> WindowResult:
    """Every drift test of one window: ``X`` its rows (alibi's encoding), ``predicted`` class indices;
    ``references``: ``ks_references(detectors)``, built once."""
    names = detectors.feature_names
    p = np.ones(len(names))
    for column, reference in zip(detectors.numeric_columns, references, strict=True):
        p[column] = reference.p_value(X[:, column])
    for column, counts in zip(detectors.categorical_columns, detectors.category_counts, strict=True):
        codes = X[:, column].astype(np.intp)
        p[column] = chi2_p_value(np.bincount(codes, minlength=len(counts))[: len(counts)], counts)
    flags = correct(p, alpha, method)
    classes = len(detectors.class_counts)
    mix = np.bincount(np.asarray(predicted, dtype=np.intp), minlength=classes)[:classes]
    mix_p = chi2_p_value(mix, detectors.class_counts)
    return WindowResult(
        rows=len(X),
        p_values={name: float(p[j]) for j, name in enumerate(names)},
        drift={name: bool(flags[j]) for j, name in enumerate(names)},
        class_mix_p_value=mix_p,
        class_mix_drift=bool(mix_p <= alpha),
        outliers=outliers,
        closed_at=closed_at,
    )


def ks_references(detectors: Detectors) -> list[KsReference]:
    return [KsReference(values) for values in detectors.numeric_reference]
