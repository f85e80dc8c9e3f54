"""``glassbox train`` as a user runs it: a real subprocess, its output and its exit code."""

from __future__ import annotations

import subprocess

from glassbox.stack.process import venv_bin


def glassbox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("glassbox"), *args], capture_output=True, text=True, timeout=300)


def test_train_writes_a_version_with_progress(toy_training, tmp_path):
    out = tmp_path / "model"
    result = glassbox("train", "--config", str(toy_training()), "--output", str(out), "--version", "v1")
    assert result.returncode == 0, result.stderr
    assert "trained toy v1" in result.stdout and "test accuracy" in result.stdout
    assert "write artifacts" in result.stderr and "8/8" in result.stderr  # the progress bar
    assert (out / "LATEST").read_text().strip() == "v1"
    assert (out / "v1" / "model_card.md").exists()


def test_fairness_gate_exit_codes(toy_training, tmp_path):
    loose = toy_training(fairness={"gate": {"demographic_parity_difference": 0.95}})
    ok = glassbox(
        "train", "--config", str(loose), "--output", str(tmp_path / "m"), "--fairness-gate", "--no-progress"
    )
    assert ok.returncode == 0, ok.stderr
    tight = toy_training(fairness={"gate": {"demographic_parity_difference": 0.05}})
    failed = glassbox(
        "train", "--config", str(tight), "--output", str(tmp_path / "m"), "--fairness-gate", "--no-progress"
    )
    assert failed.returncode == 3
    assert "fairness gate FAILED: demographic_parity_difference for group" in failed.stderr
    assert "'B'" in failed.stderr and "'A'" in failed.stderr
    assert "LATEST was not moved" in failed.stderr


def test_config_error_is_one_clear_line(toy_training, tmp_path):
    config = toy_training(features={"age": "numeric", "group": "categorical", "salary": "numeric"})
    result = glassbox("train", "--config", str(config), "--output", str(tmp_path / "m"), "--no-progress")
    assert result.returncode == 2
    assert "ConfigError" in result.stderr and "['salary']" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "m").glob("*"))  # no half-written version left behind


def test_corrections_from_a_queue_export(toy_training, tmp_path):
    import json

    config = toy_training()
    rows = (config.parent / "toy.csv").read_text().splitlines()[1:]
    flipped = {i: "no" if rows[i].endswith(",yes") else "yes" for i in (0, 1)}
    records = [
        {"id": f"audit:v1:{i}", "source": "training-audit", "final_label": label, "model_version": "v1",
         "metadata": {"row_index": i}}
        for i, label in flipped.items()
    ]  # fmt: skip
    records.append(
        {"id": "req-1:0", "source": "prediction", "final_label": "yes", "model_version": "v1",
         "features": {"age": 40.0, "hours": 45.0, "colour": 1.0, "group": 0.0}, "metadata": {}}
    )  # fmt: skip
    records.append({"id": "req-2:0", "source": "prediction", "final_label": None, "metadata": {}})
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "m"
    result = glassbox(
        "train", "--config", str(config), "--output", str(out), "--version", "v2", "--no-progress",
        "--corrections", str(export), "--add-reviewed-predictions",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "v2" / "manifest.json").read_text())
    assert manifest["corrections"]["labels_corrected"] == 2
    assert manifest["corrections"]["rows_added"] == 1
    assert manifest["corrections"]["unlabelled_skipped"] == 1
    assert "Labels corrected: 2" in (out / "v2" / "model_card.md").read_text()

    missing = glassbox("train", "--config", str(config), "--output", str(out), "--corrections", "nope.jsonl")
    assert missing.returncode == 2 and "corrections file not found" in missing.stderr
