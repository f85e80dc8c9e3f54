"""Render the model card (Markdown) from the report: what the model is, how well and how fairly it does."""

from __future__ import annotations

from typing import Any

from glassbox.pipeline.evaluation import GROUP_METRICS
from glassbox.pipeline.gate import Breach


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_num(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(
    summary: dict[str, Any], report: dict[str, Any], gate: list[Breach], thresholds: dict[str, float]
) -> str:
    """``summary`` holds name, version, created_at, estimator, params, data_sha256, class_names, split,
    fast_path (equivalence check) and corrections (or None)."""
    perf, fast = report["performance"], summary["fast_path"]
    out = [
        f"# Model card: {summary['name']} {summary['version']}",
        "",
        "## Model",
        "",
        f"- Created: {summary['created_at']}",
        f"- Estimator: `{summary['estimator']}` with `{summary['params']}` behind Alibi's income-example "
        "preprocessing (median impute + scale numerics, median impute + one-hot categoricals)",
        f"- Classes: {summary['class_names']} (positive: `{summary['class_names'][1]}`)",
        f"- Training data: `{summary['dataset']}` (sha256 `{summary['data_sha256']}`), "
        f"{report['train_rows']} train rows, {report['test_rows']} test rows ({summary['split']})",
        f"- Fast path (compiled: compact forest or ONNX) vs sklearn on the test split: max |Δp| = "
        f"{fast['max_abs_diff']:.2e}, argmax mismatches = {fast['argmax_mismatches']}",
        "",
        "Intended use: a demonstration of serving, explaining and reviewing a tabular classifier. The UCI "
        "Adult census data (1994) is not a basis for real lending decisions.",
        "",
        "## Performance (test split)",
        "",
        _table(
            ["accuracy", "precision", "recall", "ROC AUC"],
            [[perf["accuracy"], perf["precision"], perf["recall"], perf["roc_auc"]]],
        ),
        "",
        "Confusion matrix (rows: true, columns: predicted):",
        "",
        _table(
            ["", *summary["class_names"]],
            [
                [name, *row]
                for name, row in zip(summary["class_names"], perf["confusion_matrix"], strict=True)
            ],
        ),
        "",
        "![confusion matrix](plots/confusion_matrix.png)",
        "",
        "## Fairness (test split)",
        "",
    ]
    for attribute, result in report["fairness"].items():
        metrics = [*GROUP_METRICS, "roc_auc"]
        out += [
            f"### {attribute}",
            "",
            _table(
                ["group", *metrics],
                [[g, *(row[m] for m in metrics)] for g, row in result["by_group"].items()],
            ),
            "",
        ]
        out.append(
            f"Gaps are measured over the groups with enough test rows: {', '.join(result['groups_in_gaps'])}."
        )
        out.append("")
        for metric in thresholds:
            gap = result[metric]
            status = (
                "**breached**" if gap["value"] is not None and gap["value"] > thresholds[metric] else "ok"
            )
            out.append(
                f"- {metric}: {_num(gap['value'])} ({gap['rate']} from {gap['lowest_group']} to "
                f"{gap['highest_group']}); gate {thresholds[metric]} → {status}"
            )
        out.append("")
    out += [
        "![ROC by group](plots/roc_by_group.png)",
        "",
        "Fairness gate: " + ("passed" if not gate else "; ".join(str(b) for b in gate)),
        "",
        "## Data imbalance (training rows)",
        "",
    ]
    for attribute, splits in report["imbalance"].items():
        table = splits["train"]
        out += [
            _table(
                [attribute, "rows", "share", "positive rate"],
                [[g, v["count"], v["share"], v["positive_rate"]] for g, v in table.items()],
            ),
            "",
        ]
    out += ["![imbalance](plots/imbalance.png)", "", "## Permutation importance (test split)", ""]
    ranked = sorted(report["importance"].items(), key=lambda item: -item[1]["mean"])
    out += [
        _table(["feature", "mean drop in accuracy", "std"], [[n, v["mean"], v["std"]] for n, v in ranked]),
        "",
    ]
    out += ["![importance](plots/importance.png)", "", "## Label corrections", ""]
    corrections = summary.get("corrections")
    if not corrections:
        out.append("None: trained on the labels as published.")
    else:
        out += [
            f"- Source: `{corrections.get('source')}` (sha256 `{corrections.get('sha256')}`)",
            f"- Labels corrected: {corrections.get('labels_corrected', 0)}, "
            f"confirmed: {corrections.get('labels_confirmed', 0)}, "
            f"reviewed prediction rows added: {corrections.get('rows_added', 0)}, "
            f"skipped: {len(corrections.get('skipped', []))}",
        ]
    if summary.get("attribution"):
        out += ["", "## Data attribution", "", summary["attribution"]]
    out.append("")
    return "\n".join(out)
