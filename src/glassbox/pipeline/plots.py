"""The model card's PNG plots, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    # No timestamp in the PNG: the same model draws the same bytes.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def imbalance_plot(imbalance: dict[str, Any], path: Path) -> Path:
    """Per protected attribute: rows per group (bars) and the positive rate per group (train split)."""
    attributes = list(imbalance)
    fig, axes = plt.subplots(
        2, max(1, len(attributes)), figsize=(5 * max(1, len(attributes)), 6), squeeze=False
    )
    for col, attribute in enumerate(attributes):
        table = imbalance[attribute]["train"]
        groups = list(table)
        axes[0][col].bar(groups, [table[g]["count"] for g in groups], color="tab:blue")
        axes[0][col].set_title(f"{attribute}: training rows per group")
        axes[1][col].bar(groups, [table[g]["positive_rate"] for g in groups], color="tab:orange")
        axes[1][col].set_title(f"{attribute}: positive rate per group")
        axes[1][col].set_ylim(0, 1)
        for ax in (axes[0][col], axes[1][col]):
            ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def roc_plot(curves: dict[str, Any], path: Path) -> Path:
    """ROC curve of every group, one panel per protected attribute."""
    attributes = list(curves)
    fig, axes = plt.subplots(
        1, max(1, len(attributes)), figsize=(5 * max(1, len(attributes)), 4.5), squeeze=False
    )
    for col, attribute in enumerate(attributes):
        ax = axes[0][col]
        for group, curve in curves[attribute].items():
            ax.plot(curve["fpr"], curve["tpr"], label=f"{group} (AUC {curve['auc']:.3f})")
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set_title(f"ROC by {attribute}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize="small", loc="lower right")
    return _save(fig, path)


def confusion_plot(matrix: list[list[int]], class_names: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (test split)")
    return _save(fig, path)


def importance_plot(importance: dict[str, dict[str, float]], path: Path) -> Path:
    ordered = sorted(importance.items(), key=lambda item: item[1]["mean"])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(ordered) + 1.2))
    ax.barh(
        [name for name, _ in ordered], [v["mean"] for _, v in ordered], xerr=[v["std"] for _, v in ordered]
    )
    ax.set_xlabel("drop in accuracy when shuffled")
    ax.set_title("Permutation importance (test split)")
    return _save(fig, path)


def draw_all(
    report: dict[str, Any], curves: dict[str, Any], class_names: list[str], plots_dir: Path
) -> list[Path]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    return [
        imbalance_plot(report["imbalance"], plots_dir / "imbalance.png"),
        roc_plot(curves, plots_dir / "roc_by_group.png"),
        confusion_plot(
            report["performance"]["confusion_matrix"], class_names, plots_dir / "confusion_matrix.png"
        ),
        importance_plot(report["importance"], plots_dir / "importance.png"),
    ]
