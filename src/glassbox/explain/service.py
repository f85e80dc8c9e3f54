"""The transport-neutral core of the explainer (like MLServer's dataplane): cache, jobs, metrics.

The Seldon component and its Flask routes only translate wire formats to an ``ExplainRequest`` and
this service's answers back; everything the explainer decides happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from glassbox.contract.explanations import ExplainMethods
from glassbox.errors import GlassboxError, InvalidInput, Overloaded, UpstreamUnavailable
from glassbox.explain.cache import Cache, cache_key
from glassbox.explain.jobs import DONE, FAILED, Jobs, JobState, Work
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.params import ExplainParams
from glassbox.explain.remote import BadModelAnswer, ModelMismatch
from glassbox.explain.stores import StoreUnavailable

if TYPE_CHECKING:
    from glassbox.explain.core import DeterministicExplainer  # imports alibi: load() time only
    from glassbox.explain.methods import MethodRunner

JOB_PATH = "/api/v1.0/explain/jobs/{id}"


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain and how. ``job_id`` alone polls a job; ``submit`` answers with a job at once."""

    rows: np.ndarray | None = None
    params: ExplainParams = field(default_factory=ExplainParams)
    seed: int | None = None
    submit: bool = False
    job_id: str | None = None
    methods: ExplainMethods = field(default_factory=ExplainMethods)  # anchors alone by default


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of ``glassbox_explainer_failures_total`` for a failure of explaining work.

    Rejected requests (4xx) are counted by the transport (``routes``), with their own reasons.
    """
    for kind, reason in (
        (Overloaded, "overloaded"),
        (StoreUnavailable, "store_unavailable"),  # before its base class UpstreamUnavailable
        (UpstreamUnavailable, "model_unavailable"),
        (ModelMismatch, "model_mismatch"),
        (BadModelAnswer, "model_bad_answer"),
    ):
        if isinstance(exc, kind):
            return reason
    reason = getattr(exc, "reason", None)  # e.g. model_version_mismatch (attributions.VersionConflict)
    return reason if isinstance(reason, str) else "internal"


class ExplainService:
    def __init__(
        self,
        explainer: DeterministicExplainer,
        cache: Cache,
        jobs: Jobs,
        metrics: ExplainerMetrics,
        default_seed: int,
        max_rows: int,
        sync_wait_s: float,
        methods: MethodRunner | None = None,
    ):
        self.explainer = explainer
        self.methods = methods  # attributions and counterfactuals; None: anchors only
        self.cache = cache
        self.jobs = jobs
        self.metrics = metrics
        self.default_seed = default_seed
        self.max_rows = max_rows
        self.sync_wait_s = sync_wait_s
        jobs.bind(self.run)  # whichever process's job worker takes a job runs it with its own explainer

    def handle(self, request: ExplainRequest) -> dict[str, Any]:
        """The jsonData body: explanations, a job handle, or a polled job's state (and result)."""
        try:
            if request.job_id is not None:
                return self.poll(request.job_id)
            return self._explain(request)
        except (Overloaded, StoreUnavailable) as exc:
            self.metrics.failed(failure_reason(exc))
            raise

    def poll(self, job_id: str) -> dict[str, Any]:
        return job_body(self.jobs.get(job_id))

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
        methods = request.methods
        self._check(methods)
        version = self.explainer.model_version
        cached = self.cache.get_many([cache_key(version, row, request.params, seed, methods) for row in rows])
        misses = sum(record is None for record in cached)
        self.metrics.cache(hits=len(cached) - misses, misses=misses)
        if not misses:
            return response_body(cached, [True] * len(cached))

        rows_json = np.asarray(rows, dtype=np.float64).tolist()
        options = None if methods.anchors_only else methods.model_dump(mode="json")
        work = Work(rows=rows_json, params=request.params.model_dump(), seed=seed, methods=options)
        job = self.jobs.submit(work)
        if request.submit:
            return job_body(job)
        # Wait a bounded time; a job still running answers its handle, and its result waits under its id.
        job = self.jobs.wait(job.id, self.sync_wait_s)
        if job.status == DONE:
            assert job.result is not None
            return job.result
        if job.status == FAILED:
            job.raise_failure()
        return job_body(job)

    def run(self, work: Work) -> dict[str, Any]:
        """Run one job: the rows the cache does not hold (by now) are explained and cached."""
        rows = np.asarray(work.rows, dtype=np.float64)
        params = ExplainParams.model_validate(work.params)
        methods = ExplainMethods() if work.methods is None else ExplainMethods.model_validate(work.methods)
        version = self.explainer.model_version
        keys = [cache_key(version, row, params, work.seed, methods) for row in rows]
        records = self.cache.get_many(keys)
        hits = [record is not None for record in records]
        for i, row in enumerate(rows):
            if records[i] is not None:
                continue
            try:
                if methods.anchors_only or self.methods is None:
                    record = self.explainer.explain(row, params, work.seed)
                else:
                    record = self.methods.explain(row, methods, params, work.seed)
            except Exception as exc:
                # A refusal (4xx, e.g. another model version) is counted where it is answered.
                if not (isinstance(exc, GlassboxError) and 400 <= exc.status_code < 500):
                    self.metrics.failed(failure_reason(exc))
                raise
            stats = record["stats"]
            if "anchor" in record:
                self.metrics.explained(
                    stats["seconds"],
                    stats["model_calls"],
                    stats["model_rows"],
                    record["precision"],
                    record["coverage"],
                )
            self.cache.put(keys[i], record)
            records[i] = record
        return response_body(records, hits)

    def _check(self, methods: ExplainMethods) -> None:
        """Refuse a method this explainer cannot run now (409), before a job is queued for it."""
        if methods.anchors_only:
            return
        if self.methods is None:
            from glassbox.explain.methods import MethodUnavailable

            raise MethodUnavailable(f"methods {list(methods.method)}: this explainer runs anchors only")
        self.methods.check(methods)


def job_body(job: JobState) -> dict[str, Any]:
    """A job's handle (``{"job": {...}}``), with the explanations once it is done."""
    body: dict[str, Any] = {"job": {**job.describe(), "poll": JOB_PATH.format(id=job.id)}}
    if job.status == DONE and job.result is not None:
        body.update(job.result)
    return body


def response_body(records: list[dict[str, Any]], cached: list[bool]) -> dict[str, Any]:
    """``{"explanations": [...], "names", "precision", "coverage"}``: the top level mirrors row 0's anchor
    (``names`` is empty and the others null when anchors were not asked for)."""
    explanations = [{**record, "cached": hit} for record, hit in zip(records, cached, strict=True)]
    first = explanations[0]
    return {
        "explanations": explanations,
        "names": first.get("anchor", []),
        "precision": first.get("precision"),
        "coverage": first.get("coverage"),
    }
