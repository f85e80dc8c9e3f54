"""``glassbox train``: train a model version from a config and write its artifacts and model card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CONFIG = Path("pipeline/configs/adult.yaml")
DEFAULT_OUTPUT = Path("artifacts/loanclassifier")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model version: artifacts, report and model card")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"training config (default {DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"model directory (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument("--version", help="version name (default: UTC timestamp)")
    parser.add_argument(
        "--fairness-gate",
        action="store_true",
        help="exit 3 when a fairness gap exceeds its config threshold (the version is kept, not promoted)",
    )
    # Annotation queue (issue 5): retrain on reviewed labels from `glassbox queue export`.
    parser.add_argument(
        "--corrections", type=Path, help="queue export (JSONL/CSV) to take reviewed labels from"
    )
    parser.add_argument(
        "--add-reviewed-predictions", action="store_true", help="also train on reviewed predictions"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from glassbox.errors import GlassboxError
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.train import train

    try:
        config = load_config(args.config)
        result = train(
            config,
            args.output,
            corrections=corrections_hook(args.corrections, args.add_reviewed_predictions),
            fairness_gate=args.fairness_gate,
            version=args.version,
            progress=not args.no_progress,
        )
    except GlassboxError as exc:
        print(f"glassbox train: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 2
    print(summarize(result))
    if args.fairness_gate and result.breaches:
        for breach in result.breaches:
            print(f"fairness gate FAILED: {breach}", file=sys.stderr)
        print(f"{result.path} was written but LATEST was not moved to it", file=sys.stderr)
        return 3
    return 0


def corrections_hook(export: Path | None, include_predictions: bool):
    """The queue's export reader as a ``train(corrections=...)`` hook, or None without an export.

    The export is read here, before training starts, so a bad file fails fast with its line number.
    """
    if export is None:
        return None
    from glassbox.pipeline.corrections import apply_corrections, read_export

    corrections = read_export(export)
    return lambda data: apply_corrections(data, corrections, include_predictions=include_predictions)


def summarize(result) -> str:
    """The model card's headline: what `make demo` prints until the local stack exists."""
    m = result.manifest.metrics
    lines = [
        f"trained {result.manifest.name} {result.manifest.version} in {result.seconds:.1f}s -> {result.path}",
        f"  test accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
        f"ROC AUC {m['roc_auc']:.4f}  ({m['test_rows']} test rows, {m['train_rows']} train rows)",
        f"  fast path vs sklearn: max |dp| {m['fast_path_max_abs_diff']:.2e}",
    ]
    for attribute, gaps in m["fairness"].items():
        lines.append(
            f"  {attribute}: demographic parity diff {gaps['demographic_parity_difference']:.3f}, "
            f"equalized odds diff {gaps['equalized_odds_difference']:.3f}"
        )
    gate = "passed" if not result.breaches else "breached"
    lines.append(f"  fairness gate: {gate}; model card: {result.path / 'model_card.md'}")
    return "\n".join(lines)
