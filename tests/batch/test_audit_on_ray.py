"""``audit-labels`` on Ray: the folds fitted as Ray tasks give exactly the serial audit's records."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import ADULT_CONFIG
from glassbox.annotation.audit import audit_labels
from glassbox.batch.audit import RayOutOfFold
from glassbox.pipeline.config import load_config
from glassbox.stack.process import venv_bin

pytestmark = pytest.mark.slow


def without_timestamps(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timestamp"} for r in records]


def test_ray_folds_give_the_serial_audit(local_ray):
    config = load_config(ADULT_CONFIG)
    serial = audit_labels(config, 25, folds=3, max_rows=900)
    on_ray = audit_labels(config, 25, folds=3, max_rows=900, out_of_fold=RayOutOfFold())
    np.testing.assert_array_equal(on_ray.losses, serial.losses)  # every row's loss, bit for bit
    assert len(on_ray.records) == 25
    assert without_timestamps(on_ray.records) == without_timestamps(serial.records)


def test_cli_audit_with_a_ray_address_writes_the_serial_records(local_ray, tmp_path):
    base = [venv_bin("glassbox"), "audit-labels", "--config", str(ADULT_CONFIG), "--top-k", "10"]
    base += ["--folds", "3", "--max-rows", "600", "--dry-run"]
    outputs = {}
    for name, extra in {"serial": [], "ray": ["--ray-address", local_ray]}.items():
        outputs[name] = tmp_path / f"{name}.jsonl"
        done = subprocess.run(
            [*base, "--output", str(outputs[name]), *extra], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
    serial, ray = (
        [json.loads(line) for line in outputs[n].read_text().splitlines()] for n in ("serial", "ray")
    )
    assert len(serial) == 10 and without_timestamps(ray) == without_timestamps(serial)
    bad = subprocess.run([*base, "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--workers must be at least 1" in bad.stderr
