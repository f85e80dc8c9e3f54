"""Where jobs, results and cached explanations live: in this process, or in Redis for every process.

Without ``GLASSBOX_EXPLAINER_REDIS_URL`` each process keeps its own (the embedded default: one process,
nothing to run beside it). With it, every gunicorn worker and replica reads one store: a job submitted
to one is polled on any other, and an explanation computed once is a cache hit everywhere.
"""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING

from glassbox.errors import UpstreamUnavailable

if TYPE_CHECKING:
    from glassbox.explain.cache import Cache
    from glassbox.explain.jobs import Jobs
    from glassbox.explain.settings import ExplainerSettings


class StoreUnavailable(UpstreamUnavailable):
    """The shared store (Redis) cannot be reached or did not answer in time: 503, naming Redis."""


def build_stores(settings: ExplainerSettings, model_version: str) -> tuple[Cache, Jobs]:
    """The cache and the job store ``settings`` ask for; nothing connects until the first use."""
    if not settings.redis_url:
        from glassbox.explain.cache import ExplanationCache
        from glassbox.explain.jobs import JobManager

        jobs = JobManager(settings.max_pending, settings.job_ttl_s, settings.max_jobs)
        return ExplanationCache(settings.cache_size), jobs

    # rq and redis are imported only when the shared store is configured.
    from glassbox.explain.redis_cache import RedisExplanationCache
    from glassbox.explain.redis_jobs import RedisJobs
    from glassbox.explain.redis_store import RedisStore

    store = RedisStore(
        settings.redis_url,
        prefix=settings.redis_prefix,
        socket_timeout_s=settings.redis_socket_timeout_s,
        connect_timeout_s=settings.redis_connect_timeout_s,
    )
    cache = RedisExplanationCache(store, ttl_s=settings.cache_ttl_s, enabled=settings.cache_size > 0)
    jobs = RedisJobs(
        store,
        model_version,
        max_pending=settings.max_pending,
        ttl_s=settings.job_ttl_s,
        lease_s=settings.job_lease_s,
        retries=settings.job_retries,
        timeout_s=settings.job_timeout_s,
        execute=serves_rest(),
    )
    return cache, jobs


def serves_rest() -> bool:
    """Whether this process serves Seldon's REST API (a gunicorn worker, forked from the main process).

    Seldon also loads the component in its gRPC server, a ``multiprocessing`` child. Only the REST
    processes (gunicorn workers) take jobs; the gRPC one submits and polls.
    """
    return multiprocessing.parent_process() is None
