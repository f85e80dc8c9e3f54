"""Train one model version end to end: data → split → fit → fast path → explainer → report → publish.

Deterministic: the split, the classifier and the explainer are seeded from the config (the Alibi
income example's ``np.random.seed(0)`` recipe), so two runs give identical predictions.
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from glassbox.errors import ConfigError, Conflict, GlassboxError
from glassbox.pipeline import artifacts, detectors, fastpath
from glassbox.pipeline.config import TrainingConfig
from glassbox.pipeline.data import Dataset, load_dataset
from glassbox.pipeline.estimator import build_pipeline
from glassbox.pipeline.evaluation import evaluate
from glassbox.pipeline.fastpath import check_equivalence
from glassbox.pipeline.gate import Breach, breaches
from glassbox.pipeline.model_card import render
from glassbox.pipeline.plots import draw_all
from glassbox.pipeline.split import resample_train, split_rows

# Given the loaded dataset, return it with reviewed labels applied / reviewed rows appended, and a
# summary for the manifest and model card (glassbox.pipeline.corrections.apply_corrections fits).
CorrectionsHook = Callable[[Dataset], tuple[Dataset, dict[str, Any]]]

LIBRARIES = (
    "glassbox", "numpy", "pandas", "scikit-learn", "alibi", "dill", "onnx", "onnxruntime", "skl2onnx",
    "numba", "fairlearn", "seldon-core",
)  # fmt: skip
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
STEPS = (
    "load data",
    "split",
    "fit model",
    "compile fast path",
    "fit explainer",
    "fit detectors",
    "evaluate",
    "write artifacts",
)


@dataclass
class TrainResult:
    path: Path  # the version directory
    manifest: artifacts.Manifest
    report: dict[str, Any]
    breaches: list[Breach]
    promoted: bool  # LATEST points at this version
    seconds: float


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


class _Progress:
    """One tqdm bar over the training steps (stderr), naming the step in progress."""

    def __init__(self, enabled: bool):
        self.bar = tqdm(
            total=len(STEPS),
            disable=not enabled,
            unit="step",
            bar_format="{l_bar}{bar}| {n}/{total} [{elapsed}]",
        )

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.bar.set_description(name)
        yield
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def fit_explainer(config: TrainingConfig, data: Dataset, train_rows: np.ndarray, predictor: Callable):
    from alibi.explainers import AnchorTabular  # heavy import: only when training

    explainer = AnchorTabular(
        predictor, data.feature_names, categorical_names=data.category_map, seed=config.explainer.seed
    )
    explainer.fit(data.X[train_rows], disc_perc=list(config.explainer.disc_perc))
    return explainer


def train(
    config: TrainingConfig,
    output: str | Path,
    *,
    corrections: CorrectionsHook | None = None,
    fairness_gate: bool = False,
    version: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train and publish ``<output>/<version>/``. With ``fairness_gate`` a model that breaches a gap
    threshold is still written (nothing is lost) but LATEST is not moved to it."""
    started = time.monotonic()
    model_dir = Path(output)
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or artifacts.new_version()
    if not VERSION_NAME.fullmatch(version):
        raise ConfigError(f"version: {version!r} is not a valid name (letters, digits, '.', '_', '-')")
    if (model_dir / version).exists():  # fail before the work, not after
        raise Conflict(f"version {version} already exists in {model_dir}")
    bar = _Progress(progress)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; a served model dir must be readable
    try:
        with bar.step("load data"):
            data = load_dataset(config)
            correction_summary = None
            if corrections is not None:
                data, correction_summary = corrections(data)
            adverse = config.explanations.adverse_class
            if adverse is not None and adverse not in data.class_names:
                raise ConfigError(
                    f"explanations.adverse_class: {adverse!r} is not a class of {data.class_names}"
                )

        with bar.step("split"):
            # Rows not from the file (negative row_index: reviewed predictions) always train, so the
            # test split of the file's rows stays the same with or without corrections.
            file_rows = np.flatnonzero(data.row_index >= 0)
            split = split_rows(data, config.split, file_rows)
            added = np.flatnonzero(data.row_index < 0)
            train_rows = resample_train(data, np.concatenate([split.train, added]), config.resampling)
            test_rows = split.test
            if len(np.unique(data.y[train_rows])) < 2:
                raise ConfigError("split: the train rows hold a single class; use more data or another split")

        with bar.step("fit model"):
            pipeline = build_pipeline(config)
            if config.model.seed is not None:
                np.random.seed(config.model.seed)  # the example's recipe: estimators drawing from np.random
            try:
                pipeline.fit(data.X[train_rows], data.y[train_rows])
            except ValueError as exc:
                raise GlassboxError(f"training failed: {exc}", status_code=400) from None

        with bar.step("compile fast path"):
            fast, fast_files = fastpath.build(pipeline, len(data.feature_names))
            equivalence = check_equivalence(
                pipeline.predict_proba(data.X[test_rows]), fast.predict_proba(data.X[test_rows])
            )
            if not equivalence["equivalent"]:
                raise GlassboxError(f"fast path disagrees with sklearn on the test split: {equivalence}")

        with bar.step("fit explainer"):
            explainer = fit_explainer(config, data, train_rows, pipeline.predict)

        with bar.step("fit detectors"):
            # Drift and outlier references (glassbox.monitor) from the file's train rows as drawn,
            # before any resampling: live traffic looks like the population, not a rebalanced sample.
            fitted_detectors = detectors.fit(
                data.X[split.train],
                data.feature_names,
                data.category_map,
                data.class_names,
                fast.predict(data.X[test_rows]),
                pipeline.steps[0][1],
            )

        with bar.step("evaluate"):
            report, curves = evaluate(
                data,
                train_rows,
                test_rows,
                fast.predict_proba,
                fast.predict,
                config.protected_attributes,
                config.evaluation.permutation_repeats,
                config.evaluation.seed,
                config.fairness.min_group_size,
            )
            report["fast_path"] = equivalence
            report["corrections"] = correction_summary
            found = breaches(report, config.fairness.gate)
            report["fairness_gate"] = {
                "thresholds": config.fairness.gate,
                "breaches": [str(b) for b in found],
                "passed": not found,
            }

        with bar.step("write artifacts"):
            created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            artifacts.save_dill(pipeline.steps[0][1], staging / artifacts.PREPROCESSOR)
            artifacts.save_dill(pipeline, staging / artifacts.MODEL)
            artifacts.save_explainer(explainer, staging / artifacts.EXPLAINER)
            for name, content in fast_files.items():
                (staging / name).write_bytes(content)
            (staging / detectors.DETECTORS).write_bytes(fitted_detectors.to_bytes())
            _write_json(staging / artifacts.REPORT, report)
            draw_all(report, curves, data.class_names, staging / "plots")
            summary = {
                "name": config.name,
                "version": version,
                "created_at": created_at,
                "estimator": config.model.estimator,
                "params": config.model.params,
                "class_names": data.class_names,
                "dataset": config.dataset.path.name,
                "data_sha256": data.data_sha256,
                "split": _describe_split(config),
                "fast_path": equivalence,
                "corrections": correction_summary,
                "attribution": config.dataset.attribution,
            }
            (staging / artifacts.MODEL_CARD).write_text(render(summary, report, found, config.fairness.gate))
            manifest_fields = {
                "name": config.name,
                "version": version,
                "created_at": created_at,
                "feature_names": data.feature_names,
                "feature_types": data.feature_types,
                "category_map": {str(k): v for k, v in data.category_map.items()},
                "class_names": data.class_names,
                "positive_class": data.class_names[1],
                "protected_attributes": list(config.protected_attributes),
                "metrics": _headline_metrics(report),
                "library_versions": library_versions(),
                "training_config": config.model_dump(mode="json"),
                "data_sha256": data.data_sha256,
                "corrections": correction_summary,
            }
            promote = not (fairness_gate and found)
            path = artifacts.publish_version(staging, model_dir, manifest_fields, promote=promote)
    except BaseException:
        artifacts.discard(staging)
        raise
    finally:
        bar.close()
    manifest = artifacts.read_manifest(path)
    return TrainResult(path, manifest, report, found, promote, time.monotonic() - started)


def _describe_split(config: TrainingConfig) -> str:
    split = config.split
    how = (
        f"stratified by {split.balance_by} and label"
        if split.balance_by
        else f"np.random.seed({split.seed}) permutation"
    )
    text = f"{how}, train_size {split.train_size}"
    if config.resampling.strategy != "none":
        text += f", train rows {config.resampling.strategy}d by {config.resampling.by} and label"
    return text


def _headline_metrics(report: dict[str, Any]) -> dict[str, Any]:
    perf = report["performance"]
    metrics: dict[str, Any] = {k: perf[k] for k in ("accuracy", "precision", "recall", "roc_auc")}
    metrics["test_rows"] = report["test_rows"]
    metrics["train_rows"] = report["train_rows"]
    metrics["fairness"] = {
        attribute: {
            gap: result[gap]["value"]
            for gap in ("demographic_parity_difference", "equalized_odds_difference")
        }
        for attribute, result in report["fairness"].items()
    }
    metrics["fast_path_max_abs_diff"] = report["fast_path"]["max_abs_diff"]
    metrics["fairness_gate_passed"] = report["fairness_gate"]["passed"]
    return metrics


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n")
