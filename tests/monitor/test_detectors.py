"""The detectors fitted by ``glassbox train``: stored as plain hashed arrays, and the statistics they feed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram
from scipy import stats

from glassbox.errors import ArtifactIntegrityError
from glassbox.monitor.drift import KsReference, chi2_p_value, correct
from glassbox.monitor.metrics import observe_many
from glassbox.monitor.windows import Window
from glassbox.pipeline.artifacts import MANIFEST, files_digest, load_bundle
from glassbox.pipeline.detectors import DETECTORS, Detectors
from glassbox.stack.process import venv_bin


def test_bundle_carries_hashed_array_only_detectors(monitored_bundle, trained_artifacts, tmp_path):
    manifest = monitored_bundle.manifest
    assert DETECTORS in manifest.files
    with np.load(monitored_bundle.path / DETECTORS, allow_pickle=False) as npz:  # no object arrays
        assert all(npz[name].dtype != object for name in npz.files)
    detectors = monitored_bundle.detectors()
    assert detectors.feature_names == tuple(manifest.feature_names)
    assert [len(r) for r in detectors.numeric_reference] == [manifest.metrics["train_rows"]] * 4
    assert detectors.class_counts.sum() == manifest.metrics["test_rows"]  # the held-out predictions
    assert detectors.quantile == 0.99 and detectors.threshold > 0

    copy = tmp_path / "version"
    shutil.copytree(monitored_bundle.path, copy)
    payload = bytearray((copy / DETECTORS).read_bytes())
    payload[-40] ^= 0xFF
    (copy / DETECTORS).write_bytes(bytes(payload))
    with pytest.raises(ArtifactIntegrityError):
        load_bundle(copy)


def test_round_trip_and_scores(monitored_bundle, heldout_rows):
    detectors = monitored_bundle.detectors()
    again = Detectors.from_bytes(detectors.to_bytes())
    assert np.array_equal(again.score(heldout_rows), detectors.score(heldout_rows))
    rate = float((detectors.score(heldout_rows) > 1).mean())
    assert 0.002 < rate < 0.03  # the training 99th percentile, on rows the model never saw
    names = list(detectors.feature_names)
    strange = heldout_rows[:2].copy()
    strange[0, names.index("Capital Gain")] = 5_000_000
    strange[1, names.index("Age")] = 16  # younger than every training applicant
    scores, _, terms, excess = detectors.assess(strange)
    assert (scores > 1).all()
    why = detectors.explain(strange, terms, excess)
    assert next(iter(why[0].shares)) == "Capital Gain" and why[1].out_of_range == {"Age": 16.0}


def test_statistics_match_scipy():
    rng = np.random.default_rng(3)
    reference = np.sort(rng.integers(17, 90, 5000).astype(float))
    prepared = KsReference(reference)
    for shift in (0, 2, 10):
        window = rng.integers(17, 90, 300).astype(float) + shift
        expected = stats.ks_2samp(window, reference, method="asymp").pvalue
        assert prepared.p_value(window) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    observed, reference_counts = np.array([30, 50, 20]), np.array([300, 500, 200])
    expected = stats.chisquare(observed, 100 * (reference_counts + 0.5) / (reference_counts + 0.5).sum())
    assert chi2_p_value(observed, reference_counts) == pytest.approx(expected.pvalue)


def test_holm_and_bonferroni():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: 0.005 <= 0.05/4, 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops it.
    assert correct(p, 0.05, "holm").tolist() == [True, False, False, True]
    assert correct(p, 0.05, "bonferroni").tolist() == [True, False, False, True]
    p = np.array([0.01, 0.04, 0.045])  # Holm rejects what Bonferroni (0.1/3 each) keeps
    assert correct(p, 0.1, "holm").tolist() == [True, True, True]
    assert correct(p, 0.1, "bonferroni").tolist() == [True, False, False]


def test_time_window_keeps_a_bounded_uniform_sample():
    window = Window("time", 100, 1, 0.0)
    values = np.arange(10_000, dtype=float)
    for start in range(0, 10_000, 250):
        part = values[start : start + 250, None]
        window.add(part, np.zeros(250, dtype=np.intp), part[:, 0] % 100 == 0)
    kept, _ = window.rows()
    assert window.seen == 10_000 and len(kept) == 100 and window.outliers == 100
    assert 3_000 < kept.mean() < 7_000  # drawn from the whole period, not its first rows


def test_batch_histogram_equals_observe():
    one, batch = CollectorRegistry(), CollectorRegistry()
    buckets = (0.5, 1.0, 2.0)
    h1 = Histogram("h", "h", buckets=buckets, registry=one)
    h2 = Histogram("h", "h", buckets=buckets, registry=batch)
    values = np.array([0.1, 0.5, 0.7, 1.0, 3.0, 2.0])
    for v in values:
        h1.observe(v)
    observe_many(h2, values)

    def samples(registry):
        return [
            (s.name, s.labels, s.value)
            for f in registry.collect()
            for s in f.samples
            if "created" not in s.name
        ]

    assert samples(one) == samples(batch)


def test_a_bundle_without_detectors_is_refused_by_name(monitored_bundle, tmp_path):
    copy = tmp_path / "old-version"
    shutil.copytree(monitored_bundle.path, copy)
    (copy / DETECTORS).unlink()
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["files"][DETECTORS]
    manifest["artifact_sha256"] = files_digest(manifest["files"])
    (copy / MANIFEST).write_text(json.dumps(manifest))
    done = subprocess.run(
        [venv_bin("glassbox"), "monitor", "serve", "--port", "1"],
        env={**os.environ, "GLASSBOX_MONITOR_ARTIFACTS": str(copy)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "has no detectors.npz" in done.stderr and "retrain" in done.stderr
