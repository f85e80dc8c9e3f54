"""Explanation latency: the remote explainer against in-process alibi over the plain sklearn pipeline.

Twenty fixed rows of the test split (the first 20, in split order) are explained once each:

- ``in-process alibi, sklearn``: AnchorTabular in this process, alibi's own sampling, over
  ``bundle.pipeline.predict_proba`` (the baseline of issue 4: alibi's example setup);
- ``in-process glassbox core, fast path``: ``DeterministicExplainer`` (with its range-choice fix)
  over the ONNX fast path, for reference;
- ``remote``: the LoanExplainer microservice calling the LoanClassifier microservice over REST
  (each row once: every explanation is a cache miss);
- ``remote cache hit``: the same 20 requests again, answered from the cache (HTTP round trip included).

The three explaining variants run interleaved, row by row, so that the load of a shared machine
drifts over all of them alike; the ratio is of p50s over the same 20 rows.

Goal (issue 4): remote p50 <= 0.4 x in-process sklearn p50; a cache hit <= 10 ms.
Run: ``python -m benchmarks.run explain`` (results in benchmarks/results/explain.{json,md}).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from benchmarks.common import artifacts_dir, percentiles, write_results
from glassbox.contract.labels import argmax_like_sklearn
from glassbox.contract.schema import FeatureSchema
from glassbox.explain.core import DeterministicExplainer
from glassbox.explain.params import ExplainParams
from glassbox.stack.process import LOOPBACK, seldon_microservice

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipeline/configs/adult.yaml"
N_ROWS = 20
SEED = 1
GOAL_RATIO = 0.4
GOAL_HIT_MS = 10.0


def benchmark_rows() -> np.ndarray:
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset
    from glassbox.pipeline.split import split_rows

    config = load_config(CONFIG)
    dataset = load_dataset(config)
    return dataset.X[split_rows(dataset, config.split).test[:N_ROWS]]


class TimedPredictor:
    """Labels from ``predict_proba``, with the time spent inside it."""

    def __init__(self, predict_proba):
        self.predict_proba, self.seconds = predict_proba, 0.0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        labels = argmax_like_sklearn(self.predict_proba(X))
        self.seconds += time.perf_counter() - start
        return labels


class Variant:
    """One way of explaining a row; collects latencies and model work."""

    def __init__(self, name: str, explain):
        self.name, self.explain = name, explain
        self.samples: list[float] = []
        self.calls: list[int] = []
        self.rows: list[int] = []
        self.predictor: TimedPredictor | None = None

    def run(self, row: np.ndarray) -> dict:
        start = time.perf_counter()
        record = self.explain(row)
        self.samples.append(time.perf_counter() - start)
        if "stats" in record and not record.get("cached"):
            self.calls.append(record["stats"]["model_calls"])
            self.rows.append(record["stats"]["model_rows"])
        return record

    def result(self) -> dict:
        result = {"variant": self.name, **percentiles(self.samples)}
        if self.calls:
            result["calls_per_explanation"] = float(np.mean(self.calls))
            result["rows_per_explanation"] = float(np.mean(self.rows))
        if self.predictor is not None:
            result["share_in_predict"] = self.predictor.seconds / sum(self.samples)
        return result


def in_process(bundle, name: str, predict_proba, speedups: bool) -> Variant:
    manifest = bundle.manifest
    predictor = TimedPredictor(predict_proba)
    explainer = DeterministicExplainer(
        bundle.load_explainer(),
        predictor,
        FeatureSchema.of(manifest.feature_names, manifest.category_map),
        list(manifest.class_names),
        manifest.artifact_sha256,
    )
    variant = Variant(name, lambda row: explainer.explain(row, ExplainParams(), SEED, speedups))
    variant.predictor = predictor
    return variant


def start_services(artifacts: Path, workdir: Path) -> tuple[list, str]:
    """The model and the explainer microservices; returns them and the explainer's predictions URL.

    Both with 4 gunicorn threads, as ``glassbox up`` runs them: gunicorn's sync worker (1 thread)
    closes every connection, so the explainer's keep-alive pool would reconnect on every call.
    """
    common = {
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
        "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
    }
    model, model_ports = seldon_microservice(
        "model",
        "glassbox.serving.component.LoanClassifier",
        workdir / "model.log",
        env={**common, "GLASSBOX_MODEL_ARTIFACTS": str(artifacts), "GLASSBOX_MODEL_OUTBOX_DIR": str(workdir)},
        threads=4,  # as the local stack runs it: gunicorn's threaded worker keeps connections alive
    )
    model_url = f"http://{LOOPBACK}:{model_ports['http']}/api/v1.0/predictions"
    explainer, ports = seldon_microservice(
        "explainer",
        "glassbox.explain.component.LoanExplainer",
        workdir / "explainer.log",
        env={
            **common,
            "GLASSBOX_EXPLAINER_ARTIFACTS": str(artifacts),
            "GLASSBOX_EXPLAINER_MODEL_URL": model_url,
        },
        threads=4,
    )
    model.start(timeout=120)
    explainer.start(timeout=120)
    return [explainer, model], f"http://{LOOPBACK}:{ports['http']}/api/v1.0/predictions"


def remote_explain(url: str):
    session = requests.Session()

    def explain(row: np.ndarray, seed: int = SEED) -> dict:
        body = {"data": {"ndarray": [row.tolist()]}, "meta": {"tags": {"explain": {"seed": seed}}}}
        reply = session.post(url, json=body, timeout=120)
        reply.raise_for_status()
        return reply.json()["jsonData"]["explanations"][0]

    return explain


def main() -> Path:
    from glassbox.pipeline.artifacts import load_bundle

    artifacts = artifacts_dir()
    bundle = load_bundle(artifacts)
    rows = benchmark_rows()
    processes, url = start_services(artifacts, Path(tempfile.mkdtemp(prefix="glassbox-bench-explain-")))
    try:
        explain = remote_explain(url)
        baseline = in_process(
            bundle, "in-process alibi, sklearn (baseline)", bundle.pipeline.predict_proba, False
        )
        core = in_process(bundle, "in-process glassbox core, fast path", bundle.predict_proba, True)
        remote = Variant("remote (explainer -> model over REST)", explain)
        hit = Variant("remote cache hit", explain)
        for variant in (baseline, core):  # warm-up: lazy loads, first-call caches
            variant.explain(rows[0])
        explain(rows[0], seed=SEED + 1000)  # another seed: not cached for the measured requests
        for row in rows:
            for variant in (baseline, core):
                variant.run(row)
            assert not remote.run(row)["cached"]
        for row in rows:
            assert hit.run(row)["cached"]
    finally:
        for process in processes:
            process.stop()

    results = [v.result() for v in (baseline, core, remote, hit)]
    for result in results:
        result["ratio_to_baseline_p50"] = result["p50_ms"] / results[0]["p50_ms"]
    remote_row, hit_row = results[2], results[3]
    notes = (
        f"{N_ROWS} fixed test rows, seed {SEED}, alibi defaults (threshold 0.95), variants interleaved "
        f"row by row. Goal: remote p50 <= {GOAL_RATIO}x baseline p50 -> "
        f"{remote_row['ratio_to_baseline_p50']:.2f}x "
        f"({'met' if remote_row['ratio_to_baseline_p50'] <= GOAL_RATIO else 'NOT met'}); "
        f"cache hit p50 <= {GOAL_HIT_MS:.0f} ms -> {hit_row['p50_ms']:.1f} ms "
        f"({'met' if hit_row['p50_ms'] <= GOAL_HIT_MS else 'NOT met'}). "
        f"Machine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}."
    )
    columns = [
        "variant", "n", "p50_ms", "p90_ms", "mean_ms", "calls_per_explanation", "rows_per_explanation",
        "share_in_predict", "ratio_to_baseline_p50",
    ]  # fmt: skip
    return write_results("explain", results, columns, notes)


if __name__ == "__main__":
    print(main().read_text())
