"""Fixtures of the batch tests: one local Ray for a whole module, input files of Adult test rows."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from annotation.conftest import database, start_queue  # noqa: F401 - the queue's fixtures, reused

HERE = Path(__file__).resolve().parent
FAST_ANCHORS = {"coverage_samples": 500, "n_covered_ex": 2, "threshold": 0.9}  # ~30 ms a row


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A 2-CPU Ray on the loopback interface, shared by a module's tests; yields its address.

    Its workers (and any driver started with this environment) can import ``faulty_method``."""
    import importlib
    import sys

    sys.path.insert(0, str(HERE))  # the serial runs import faulty_method in this process
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), saved["PYTHONPATH"]) if p)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by Ray at import: loopback only
    import ray

    importlib.reload(ray._private.ray_constants)  # in case another module imported Ray already
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    sys.path.remove(str(HERE))
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def write_jsonl(path: Path, rows: np.ndarray, ids: list[str] | None = None) -> Path:
    ids = ids or [f"r{i:04d}" for i in range(len(rows))]
    path.write_text(
        "".join(json.dumps({"id": i, "row": r}) + "\n" for i, r in zip(ids, rows.tolist(), strict=True))
    )
    return path
