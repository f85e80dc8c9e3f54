"""The transport-neutral core of the explainer (like MLServer's dataplane): cache, jobs, metrics.

The Seldon component and its Flask routes only translate wire formats to an ``ExplainRequest`` and
this service's answers back; everything the explainer decides happens here.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glassbox.errors import InvalidInput, Overloaded, UpstreamUnavailable
from glassbox.explain.cache import ExplanationCache, cache_key
from glassbox.explain.core import DeterministicExplainer
from glassbox.explain.jobs import JobManager
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.params import ExplainParams
from glassbox.explain.remote import BadModelAnswer, ModelMismatch

JOB_PATH = "/api/v1.0/explain/jobs/{id}"


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain and how. ``job_id`` alone polls a job; ``submit`` answers with a job at once."""

    rows: np.ndarray | None = None
    params: ExplainParams = field(default_factory=ExplainParams)
    seed: int | None = None
    submit: bool = False
    job_id: str | None = None


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of ``glassbox_explainer_failures_total`` for a failure of explaining work.

    Rejected requests (4xx) are counted by the transport (``routes``), with their own reasons.
    """
    for kind, reason in (
        (Overloaded, "overloaded"),
        (UpstreamUnavailable, "model_unavailable"),
        (ModelMismatch, "model_mismatch"),
        (BadModelAnswer, "model_bad_answer"),
    ):
        if isinstance(exc, kind):
            return reason
    return "internal"


class ExplainService:
    def __init__(
        self,
        explainer: DeterministicExplainer,
        cache: ExplanationCache,
        jobs: JobManager,
        metrics: ExplainerMetrics,
        default_seed: int,
        max_rows: int,
        sync_wait_s: float,
    ):
        self.explainer = explainer
        self.cache = cache
        self.jobs = jobs
        self.metrics = metrics
        self.default_seed = default_seed
        self.max_rows = max_rows
        self.sync_wait_s = sync_wait_s

    def handle(self, request: ExplainRequest) -> dict[str, Any]:
        """The jsonData body: explanations, a job handle, or a polled job's state (and result)."""
        if request.job_id is not None:
            return self.poll(request.job_id)
        try:
            return self._explain(request)
        except Overloaded as exc:
            self.metrics.failed(failure_reason(exc))
            raise

    def poll(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        body: dict[str, Any] = {"job": {**job.describe(), "poll": JOB_PATH.format(id=job.id)}}
        if job.status == "done":
            body.update(job.future.result())
        return body

    def _explain(self, request: ExplainRequest) -> dict[str, Any]:
        rows = request.rows
        if rows is None or len(rows) == 0:
            raise InvalidInput("no rows to explain: send data.ndarray, data.tensor or jsonData.instances")
        if len(rows) > self.max_rows:
            raise InvalidInput(
                f"{len(rows)} rows sent, at most {self.max_rows} are explained per request "
                "(GLASSBOX_EXPLAINER_MAX_ROWS): split the request"
            )
        seed = self.default_seed if request.seed is None else request.seed
        version = self.explainer.model_version
        keys = [cache_key(version, row, request.params, seed) for row in rows]
        cached = [self.cache.get(key) for key in keys]
        misses = sum(record is None for record in cached)
        self.metrics.cache(hits=len(keys) - misses, misses=misses)
        if not misses:
            return response_body(cached, [True] * len(cached))

        job = self.jobs.submit(lambda: self._run(rows, keys, cached, request.params, seed))
        handle = {"job": {**job.describe(), "poll": JOB_PATH.format(id=job.id)}}
        if request.submit:
            return handle
        try:
            return job.future.result(timeout=self.sync_wait_s)
        except concurrent.futures.TimeoutError:
            # Still running: answer before the gateway times out; the result waits under the job id.
            handle["job"]["status"] = job.status
            return handle

    def _run(
        self, rows: np.ndarray, keys: list, cached: list, params: ExplainParams, seed: int
    ) -> dict[str, Any]:
        records = list(cached)
        for i, row in enumerate(rows):
            if records[i] is not None:
                continue
            try:
                record = self.explainer.explain(row, params, seed)
            except Exception as exc:
                self.metrics.failed(failure_reason(exc))
                raise
            stats = record["stats"]
            self.metrics.explained(
                stats["seconds"],
                stats["model_calls"],
                stats["model_rows"],
                record["precision"],
                record["coverage"],
            )
            self.cache.put(keys[i], record)
            records[i] = record
        return response_body(records, [c is not None for c in cached])


def response_body(records: list[dict[str, Any]], cached: list[bool]) -> dict[str, Any]:
    """``{"explanations": [...], "names", "precision", "coverage"}``: the top level mirrors row 0."""
    explanations = [{**record, "cached": hit} for record, hit in zip(records, cached, strict=True)]
    first = explanations[0]
    return {
        "explanations": explanations,
        "names": first["anchor"],
        "precision": first["precision"],
        "coverage": first["coverage"],
    }
