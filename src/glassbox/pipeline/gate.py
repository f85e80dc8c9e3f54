"""The fairness gate: compare the report's gaps with the config's thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Breach:
    metric: str
    attribute: str
    value: float
    threshold: float
    lowest_group: str
    highest_group: str

    def __str__(self) -> str:
        return (
            f"{self.metric} for {self.attribute} is {self.value:.3f} > {self.threshold:.3f} "
            f"(between groups {self.lowest_group!r} and {self.highest_group!r})"
        )


def breaches(report: dict[str, Any], thresholds: dict[str, float]) -> list[Breach]:
    """Every (metric, protected attribute) whose gap exceeds its threshold."""
    found = []
    for attribute, result in report.get("fairness", {}).items():
        for metric, threshold in thresholds.items():
            gap = result[metric]
            if gap["value"] is not None and gap["value"] > threshold:
                found.append(
                    Breach(
                        metric, attribute, gap["value"], threshold, gap["lowest_group"], gap["highest_group"]
                    )
                )
    return found
