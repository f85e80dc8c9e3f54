"""The loop on a slice of the Adult data: audit -> review -> export -> `glassbox train --corrections`."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest
import yaml

from glassbox.stack.process import venv_bin

pytestmark = pytest.mark.slow


@pytest.fixture
def small_config(adult_config, tmp_path):
    """The bundled config over the first 1,500 rows: same encoding, a smaller split and forest."""
    raw = yaml.safe_load(adult_config.read_text())
    data = adult_config.parent / raw["dataset"]["path"]
    lines = gzip.decompress(data.read_bytes()).decode().splitlines()[:1500]
    (tmp_path / "small.data").write_text("\n".join(lines) + "\n")
    raw["dataset"]["path"] = "small.data"
    raw["split"]["train_size"] = 1200
    raw["model"]["params"] = {"n_estimators": 10}
    raw["evaluation"]["permutation_repeats"] = 1
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_reviewed_audit_labels_retrain_the_model(start_queue, small_config, tmp_path) -> None:
    queue = start_queue()
    audit = [
        venv_bin("glassbox"),
        "audit-labels",
        "--config",
        str(small_config),
        "--top-k",
        "3",
        "--folds",
        "3",
    ]
    sent = subprocess.run(
        [*audit, "--queue-url", queue.url, "--api-key", queue.owner_key],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sent.returncode == 0, sent.stderr
    page = queue.call("GET", "/api/v1/records?source=training-audit&sort=highest_loss").json()
    assert page["total"] == 3
    flip, keep, untouched = page["records"]
    other = next(c for c in flip["probabilities"] if c != flip["metadata"]["true_label"])
    queue.call("POST", f"/api/v1/records/{flip['id']}/responses", json={"label": other})
    queue.call(
        "POST", f"/api/v1/records/{keep['id']}/responses", json={"label": keep["metadata"]["true_label"]}
    )
    export = tmp_path / "reviewed.jsonl"
    export.write_text(queue.call("GET", "/api/v1/export?format=jsonl").text)

    models = tmp_path / "models"
    trained = subprocess.run(
        [venv_bin("glassbox"), "train", "--config", str(small_config), "--output", str(models),
         "--version", "fixed", "--no-progress", "--corrections", str(export)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads((models / "fixed" / "manifest.json").read_text())
    corrections = manifest["corrections"]
    assert corrections["labels_corrected"] == 1 and corrections["labels_confirmed"] == 1
    row = flip["metadata"]["row_index"]
    assert corrections["corrected"] == [
        {"row_index": row, "from": flip["metadata"]["true_label"], "to": other}
    ]
    card = (models / "fixed" / "model_card.md").read_text()
    assert "Labels corrected: 1, confirmed: 1" in card
    assert untouched["id"] not in export.read_text()
