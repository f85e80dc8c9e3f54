"""One batch worker: the model version loaded once, the methods built once, then rows explained one by one.

The same class runs in the driver's process (``--serial``) and as a Ray actor (one per worker): the
per-row function ``explain_row`` is all the work there is, so the output cannot depend on where it ran.
Each row's seed comes from its id (``row_seed``), never from its position or its worker.
"""

from __future__ import annotations

import hashlib
import resource
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.batch.methods import LoadedModel, RowExplainer, resolve


def row_seed(row_id: str, base_seed: int = 0) -> int:
    """A stable seed in [0, 2**32) from the row's id: the same on every machine, worker and run."""
    digest = hashlib.sha256(f"{base_seed}\x00{row_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class BatchSpec:
    """What every worker needs to know about the batch (small: it is shipped to each Ray actor)."""

    artifacts: str  # the version dir the driver resolved (never LATEST, which may move mid-run)
    artifact_sha256: str
    methods: tuple[str, ...]
    params: Mapping[str, Mapping[str, Any]]  # method -> its parameters
    base_seed: int = 0
    job: str = ""  # fingerprint of everything that shapes the output (see glassbox.batch.journal)


# A row as the driver ships it: (id, line number in the input, encoded values).
Row = tuple[str, int, list[float]]


def explain_row(
    model: LoadedModel, explainers: Mapping[str, RowExplainer], spec: BatchSpec, row: Row
) -> dict[str, Any]:
    """The output record of one row; a failure is recorded in it, never raised."""
    row_id, line, values = row
    seed = row_seed(row_id, spec.base_seed)
    instance = np.asarray(values, dtype=np.float64)
    record: dict[str, Any] = {
        "id": row_id,
        "line": line,
        "job": spec.job,
        "model_version": model.bundle.manifest.version,
        "artifact_sha256": model.artifact_sha256,
        "seed": seed,
        "instance": model.schema.decode(instance),
        "prediction": None,
        "probabilities": None,
        "explanations": {},
        "errors": {},
    }
    try:
        probabilities = model.bundle.predict_proba(instance.reshape(1, -1))[0]
        record["probabilities"] = dict(zip(model.class_names, map(float, probabilities), strict=True))
        record["prediction"] = model.class_names[int(model.bundle.predict(instance.reshape(1, -1))[0])]
    except Exception as exc:  # a row's failure is data in its record: the batch goes on
        record["errors"]["predict"] = _describe(exc)
        return record
    for name, explain in explainers.items():
        try:
            record["explanations"][name] = explain(instance, seed)
        except Exception as exc:  # likewise
            record["errors"][name] = _describe(exc)
    return record


def _describe(exc: BaseException) -> str:
    """The error as one line: its type, message and the innermost frame that raised it."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] or None
    where = f" (at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


class BatchWorker:
    """Loads the hash-verified bundle and builds each method once; ``explain`` takes a chunk of rows."""

    def __init__(self, spec: BatchSpec):
        self.spec = spec
        self.model = LoadedModel.load(spec.artifacts, spec.artifact_sha256)
        self.explainers = {
            name: resolve(name)(self.model, dict(spec.params.get(name, {}))) for name in spec.methods
        }
        # Compile the fast path now (numba, ~1 s) so that it is not charged to the first rows.
        self.model.bundle.predict(np.zeros((1, self.model.schema.width)))
        self.cpu_seconds = 0.0  # CPU spent explaining (this process), for the run's per-row cost

    def explain(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        start = time.process_time()
        records = [explain_row(self.model, self.explainers, self.spec, row) for row in rows]
        self.cpu_seconds += time.process_time() - start
        return records

    def usage(self) -> tuple[int, float]:
        """(peak resident bytes, CPU seconds spent explaining) of this worker."""
        return self.peak_memory_bytes(), self.cpu_seconds

    def peak_memory_bytes(self) -> int:
        """This process's peak resident set size (Linux reports kilobytes)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
