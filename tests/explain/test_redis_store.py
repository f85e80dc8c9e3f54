"""The shared store in one process: two explain services on one real (private) Redis, as two replicas.

Each service has its own job worker thread and sees the other's jobs and cached explanations. The
same against real explainer microservices, and a process killed mid-job: test_shared_jobs_redis.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import redis

from glassbox.contract.schema import FeatureSchema
from glassbox.errors import GlassboxError, NotFound, Overloaded, UpstreamUnavailable
from glassbox.explain.cache import ExplanationCache
from glassbox.explain.core import DeterministicExplainer
from glassbox.explain.jobs import JobManager, Work
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.redis_jobs import RedisJobs
from glassbox.explain.redis_store import RedisStore, redacted
from glassbox.explain.redis_worker import ExplainWorker
from glassbox.explain.service import ExplainRequest, ExplainService
from glassbox.explain.settings import ExplainerSettings
from glassbox.explain.stores import StoreUnavailable, build_stores

ROW = np.array([[55.0, 1.0, 40.0]])


class Gate:
    """A predictor that waits for ``opened`` (or fails) so a test controls when explanations finish."""

    def __init__(self, toy, fail: Exception | None = None):
        self.toy, self.fail, self.opened = toy, fail, threading.Event()

    def __call__(self, X):
        self.opened.wait(20)
        if self.fail:
            raise self.fail
        return self.toy.predict_proba(X).argmax(1)


def make_service(toy, url: str, predictor=None, **overrides) -> ExplainService:
    predictor = predictor or (lambda X: toy.predict_proba(X).argmax(1))
    schema = FeatureSchema.of(toy.feature_names, toy.category_map)
    explainer = DeterministicExplainer(toy.explainer, predictor, schema, toy.class_names, model_version="toy")
    settings = ExplainerSettings(
        **{"redis_url": url, "redis_prefix": "gbtest", "job_lease_s": 3, **overrides}
    )
    cache, jobs = build_stores(settings, "toy")
    return ExplainService(
        explainer, cache, jobs, ExplainerMetrics(), default_seed=1, max_rows=2, sync_wait_s=10.0
    )


@pytest.fixture
def services(toy_anchor, redis_server):
    """``start(**overrides) -> ExplainService`` on the test's Redis; their job workers stop afterwards."""
    started: list[ExplainService] = []

    def start(**overrides) -> ExplainService:
        started.append(make_service(toy_anchor, redis_server.url, **overrides))
        return started[-1]

    yield start
    for service in started:
        service.jobs.close()


def counted(service: ExplainService, key: str) -> float:
    return sum(m["value"] for m in service.metrics.drain() if m["key"] == f"glassbox_explainer_{key}")


def poll_until_finished(service: ExplainService, job_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while (body := service.poll(job_id))["job"]["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    return body


def test_without_a_redis_url_the_stores_are_in_process():
    cache, jobs = build_stores(ExplainerSettings(), "toy")
    assert isinstance(cache, ExplanationCache) and isinstance(jobs, JobManager)


def test_a_job_submitted_on_one_service_is_polled_to_completion_on_the_other(services):
    first, second = services(), services()
    handle = first.handle(ExplainRequest(rows=ROW, submit=True))["job"]
    assert handle["status"] == "queued" and handle["poll"] == f"/api/v1.0/explain/jobs/{handle['id']}"
    body = poll_until_finished(second, handle["id"])
    assert body["job"]["status"] == "done" and body["explanations"][0]["prediction"] == "yes"
    assert body["job"]["finished"] >= body["job"]["created"]
    assert first.poll(handle["id"]) == body  # the same record, whoever asks
    assert second.handle(ExplainRequest(job_id=handle["id"])) == body


def test_one_service_computes_the_other_hits_the_cache(services):
    first, second = services(), services()
    computed = first.handle(ExplainRequest(rows=ROW, seed=5))["explanations"][0]
    assert computed["cached"] is False
    hit = second.handle(ExplainRequest(rows=ROW, seed=5))["explanations"][0]
    assert hit["cached"] is True
    assert {k: v for k, v in hit.items() if k != "cached"} == {
        k: v for k, v in computed.items() if k != "cached"
    }
    assert counted(second, "cache_hits_total") == 1
    assert counted(second, "explanations_total") == 0


def test_cache_size_zero_disables_the_shared_cache(services):
    service = services(cache_size=0)
    service.handle(ExplainRequest(rows=ROW))
    assert service.handle(ExplainRequest(rows=ROW))["explanations"][0]["cached"] is False


def test_a_failing_explanation_fails_the_job_with_its_status(toy_anchor, redis_server, services):
    gate = Gate(toy_anchor, fail=UpstreamUnavailable("model at http://m is unreachable"))
    gate.opened.set()
    service = make_service(toy_anchor, redis_server.url, predictor=gate)
    try:
        with pytest.raises(GlassboxError, match="model at http://m is unreachable") as caught:
            service.handle(ExplainRequest(rows=ROW))  # synchronous: the job's failure, its status kept
        assert caught.value.status_code == 503
        handle = service.handle(ExplainRequest(rows=ROW, seed=2, submit=True))["job"]
        polled = poll_until_finished(service, handle["id"])
        assert polled["job"]["error"] == {"code": 503, "message": "model at http://m is unreachable"}
        assert "explanations" not in polled
        assert services().poll(handle["id"]) == polled  # seen from another service too
    finally:
        service.jobs.close()


def test_overload_is_refused_at_once(toy_anchor, redis_server):
    gate = Gate(toy_anchor)
    service = make_service(toy_anchor, redis_server.url, predictor=gate, max_pending=2)
    try:
        first = service.handle(ExplainRequest(rows=ROW, submit=True))["job"]["id"]
        service.handle(ExplainRequest(rows=ROW, seed=2, submit=True))
        start = time.monotonic()
        with pytest.raises(Overloaded, match=r"2 explanations running or waiting for 1 worker") as caught:
            service.handle(ExplainRequest(rows=ROW, seed=3, submit=True))
        assert caught.value.status_code == 503 and time.monotonic() - start < 1.0
        gate.opened.set()
        assert poll_until_finished(service, first)["job"]["status"] == "done"
    finally:
        gate.opened.set()
        service.jobs.close()


def test_unknown_and_foreign_job_ids_are_404(services, redis_server):
    service = services()
    with pytest.raises(NotFound, match="no explanation job 'nope'"):
        service.poll("nope")
    other = services(redis_prefix="another-deployment")
    job = other.handle(ExplainRequest(rows=ROW, submit=True))["job"]["id"]
    poll_until_finished(other, job)
    with pytest.raises(NotFound):  # a job of another prefix (deployment) sharing this Redis
        service.poll(job)
    assert redis.Redis.from_url(redis_server.url).exists(f"rq:job:{job}")


def test_redis_stopped_is_a_prompt_503_naming_redis_and_service_resumes(services, redis_server):
    service = services()
    done = service.handle(ExplainRequest(rows=ROW, submit=True))["job"]["id"]
    poll_until_finished(service, done)
    redis_server.stop()
    for request in (
        ExplainRequest(rows=ROW, seed=9),
        ExplainRequest(rows=ROW, seed=9, submit=True),
        ExplainRequest(job_id=done),
    ):
        start = time.monotonic()
        with pytest.raises(
            StoreUnavailable, match=f"Redis at redis://127.0.0.1:{redis_server.port}/0"
        ) as caught:
            service.handle(request)
        assert caught.value.status_code == 503
        assert time.monotonic() - start < 3.0  # connection refused: one quick retry, no hang
    assert counted(service, "failures_total") == 3
    redis_server.start()  # same port, empty: the worker thread reconnects by itself
    deadline = time.monotonic() + 20
    while True:
        try:
            body = service.handle(ExplainRequest(rows=ROW, seed=9))
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert body["explanations"][0]["cached"] is False


def abandon_next_job(jobs: RedisJobs) -> str:
    """What a process killed mid-job leaves: an rq worker that took the next job, started it (its lease
    running) and then never ran it nor renewed the lease."""
    queue = jobs._queue(jobs.store.worker_client())
    doomed = ExplainWorker(queue, runner=lambda work: {}, lease_s=jobs.lease_s, connection=queue.connection)
    doomed.register_birth()
    job, _ = doomed.dequeue_job_and_maintain_ttl(timeout=1)
    doomed.prepare_execution(job)
    doomed.prepare_job_execution(job, remove_from_intermediate_queue=True)
    return job.id


def test_a_job_whose_process_died_is_re_run_or_failed_with_a_reason(services, redis_server):
    store = RedisStore(redis_server.url, "gbtest", socket_timeout_s=2.0, connect_timeout_s=1.0)

    def submitter(retries: int) -> RedisJobs:  # submits only: no worker thread of its own
        return RedisJobs(store, "toy", 4, ttl_s=60, lease_s=2, retries=retries, timeout_s=60, execute=False)

    work = ROW.tolist()
    once = submitter(retries=0).submit(Work(rows=work, params={}, seed=1)).id
    again = submitter(retries=1).submit(Work(rows=work, params={}, seed=2)).id
    assert {abandon_next_job(submitter(0)), abandon_next_job(submitter(0))} == {once, again}
    poller = submitter(0)
    assert poller.get(once).status == poller.get(again).status == "running"
    time.sleep(2.2)  # the leases run out; the next poll notices, at once
    failed = poller.get(once)
    assert failed.status == "failed" and failed.error == {
        "code": 503,
        "message": "explanation job lost: the explainer process running it stopped (no heartbeat for 2s), "
        "1 time(s) in all; submit it again",
    }
    requeued = poller.get(again)
    assert requeued.status == "queued" and requeued.extra["attempt"] == 2
    assert "explainer process running it before stopped" in requeued.extra["note"]
    survivor = services(job_lease_s=2)  # a live process takes the re-queued job
    body = poll_until_finished(survivor, again)
    assert body["job"]["status"] == "done" and body["job"]["attempt"] == 2
    assert body["explanations"][0]["prediction"] == "yes"


def test_redacted_hides_the_password():
    assert redacted("redis://:s3cret@cache:6380/1") == "redis://:***@cache:6380/1"
    assert redacted("redis://user:pw@cache/0") == "redis://user:***@cache/0"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"
