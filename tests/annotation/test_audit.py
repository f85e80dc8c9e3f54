"""``glassbox audit-labels``: out-of-fold losses on the bundled training rows, sent to a real queue."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from glassbox.annotation.audit import audit_labels, cross_entropy
from glassbox.pipeline.config import load_config
from glassbox.stack.process import venv_bin

pytestmark = pytest.mark.slow


def test_cross_entropy_is_the_loss_of_the_given_label() -> None:
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.0, 1.0]])
    assert cross_entropy(probabilities, np.array([0, 1, 0])) == pytest.approx(
        [0.10536, 2.30259, 27.631], rel=1e-4
    )


def test_audit_ranks_training_rows_by_out_of_fold_loss(adult_config) -> None:
    result = audit_labels(load_config(adult_config), 20, folds=3, max_rows=1200)
    assert result.rows_audited == 1200
    losses = [r["metadata"]["loss"] for r in result.records]
    assert losses == sorted(losses, reverse=True) and losses[-1] >= np.sort(result.losses)[-20]
    top = result.records[0]
    assert top["source"] == "training-audit" and top["id"].startswith("audit:data-")
    assert top["id"].endswith(f":{top['metadata']['row_index']}")
    # The loss is of the label in the data, which a high-loss row's model probability contradicts.
    assert top["probabilities"][top["metadata"]["true_label"]] < 0.5


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_cli_sends_the_top_k_once_and_they_sort_by_loss(start_queue, adult_config) -> None:
    queue = start_queue()
    argv = [venv_bin("glassbox"), "audit-labels", "--config", str(adult_config), "--top-k", "15"]
    argv += ["--folds", "3", "--max-rows", "800", "--queue-url", queue.url, "--api-key", queue.owner_key]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "15 created, 0 already there" in first.stdout
    second = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert "0 created, 15 already there" in second.stdout
    page = queue.call("GET", "/api/v1/records?source=training-audit&sort=highest_loss&limit=100").json()
    assert page["total"] == 15
    losses = [r["metadata"]["loss"] for r in page["records"]]
    assert losses == sorted(losses, reverse=True)
