"""``glassbox explain-batch`` as a function: check everything, resume what is on disk, run the rest.

Order matters: the model version is resolved and verified, the methods resolved and every input line
checked *before* Ray starts or any row is explained, so a bad input costs seconds, not a cluster's hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glassbox.batch.journal import Journal, job_fingerprint, parquet_available
from glassbox.batch.methods import check_names, check_params
from glassbox.batch.reader import InputRows, read_rows
from glassbox.batch.runner import RunStats, progress_bar, run_on_ray, run_serial
from glassbox.batch.worker import BatchSpec, Row
from glassbox.contract.schema import FeatureSchema
from glassbox.errors import InvalidInput


@dataclass
class BatchRequest:
    """Everything the command line says about one batch."""

    input: Path
    artifacts: Path
    output: Path
    methods: Sequence[str] = ("anchors",)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    workers: int | None = None  # 0: serial, in this process; None: every CPU Ray has
    ray_address: str | None = None
    id_column: str = "id"
    seed: int = 0
    chunk_size: int = 4
    overwrite: bool = False
    retry_failed: bool = False
    progress: bool = True


@dataclass
class BatchResult:
    rows: int
    resumed: int  # rows a previous run had finished
    stats: RunStats
    records: list[dict[str, Any]]  # every row's record, in input order
    schema: FeatureSchema
    model_name: str
    job: str


def prepare(request: BatchRequest) -> tuple[BatchSpec, InputRows, FeatureSchema, str]:
    """Resolve and verify the model, check methods and output format, read every input line."""
    from glassbox.pipeline.artifacts import load_bundle  # verifies every SHA-256

    if request.output.suffix.lower() == ".parquet" and not parquet_available():
        raise InvalidInput(f"{request.output}: Parquet output needs pyarrow (not installed); use .jsonl")
    if request.chunk_size < 1:
        raise InvalidInput("--chunk-size must be at least 1")
    bundle = load_bundle(request.artifacts)
    manifest = bundle.manifest
    schema = FeatureSchema.from_manifest(manifest)
    methods = check_names(list(request.methods))
    unknown = sorted(set(request.params) - set(methods))
    if unknown:
        raise InvalidInput(f"--params given for method(s) not run: {unknown}")
    for name in methods:
        check_params(name, dict(request.params.get(name, {})))  # a typo fails now, not in every worker
    rows = read_rows(request.input, schema, request.id_column)
    params = {name: dict(request.params.get(name, {})) for name in methods}
    job = job_fingerprint(manifest.artifact_sha256, methods, params, request.seed, rows.ids)
    spec = BatchSpec(str(bundle.path), manifest.artifact_sha256, tuple(methods), params, request.seed, job)
    return spec, rows, schema, manifest.name


def run_batch(request: BatchRequest) -> BatchResult:
    spec, rows, schema, model_name = prepare(request)
    line_of = dict(zip(rows.ids, rows.lines, strict=True))
    journal = Journal.open(
        request.output, spec.job, line_of, overwrite=request.overwrite, retry_failed=request.retry_failed
    )
    resumed = len(journal.done)
    X = rows.X.tolist()
    todo: list[Row] = [
        (row_id, line, X[i])
        for i, (row_id, line) in enumerate(zip(rows.ids, rows.lines, strict=True))
        if row_id not in journal.done
    ]

    def make_bar() -> Any:
        return progress_bar(len(rows), resumed, request.progress)

    try:
        if not todo:
            stats = RunStats()
        elif request.workers == 0:
            stats = run_serial(spec, todo, journal, request.chunk_size, make_bar)
        else:
            stats = run_on_ray(
                spec, todo, journal, request.chunk_size, make_bar, request.workers, request.ray_address
            )
    finally:
        journal.close()
    records = journal.finish(request.output)
    return BatchResult(len(rows), resumed, stats, records, schema, model_name, spec.job)
