"""The explain service: cache, bounded jobs, the sync-then-poll path and the failure metrics."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from glassbox.contract.schema import FeatureSchema
from glassbox.errors import InvalidInput, NotFound, Overloaded, UpstreamUnavailable
from glassbox.explain.cache import ExplanationCache
from glassbox.explain.core import DeterministicExplainer
from glassbox.explain.jobs import JobManager
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.explain.params import ExplainParams
from glassbox.explain.service import ExplainRequest, ExplainService

ROW = np.array([[55.0, 1.0, 40.0]])


class Gate:
    """A predictor that waits for ``open`` (or fails) so a test controls when explanations finish."""

    def __init__(self, toy, fail: Exception | None = None):
        self.toy, self.fail, self.opened = toy, fail, threading.Event()

    def __call__(self, X):
        self.opened.wait(10)
        if self.fail:
            raise self.fail
        return self.toy.predict_proba(X).argmax(1)


def make_service(toy, predictor=None, max_pending=4, sync_wait_s=10.0, cache_size=16) -> ExplainService:
    predictor = predictor or (lambda X: toy.predict_proba(X).argmax(1))
    schema = FeatureSchema.of(toy.feature_names, toy.category_map)
    explainer = DeterministicExplainer(toy.explainer, predictor, schema, toy.class_names, model_version="toy")
    return ExplainService(
        explainer,
        ExplanationCache(cache_size),
        JobManager(max_pending=max_pending, ttl_s=60, max_jobs=10),
        ExplainerMetrics(),
        default_seed=1,
        max_rows=2,
        sync_wait_s=sync_wait_s,
    )


def keyed(metrics: list[dict]) -> dict:
    summed: dict = {}
    for m in metrics:
        key = (m["key"], tuple(sorted(m.get("tags", {}).items())))
        summed[key] = summed.get(key, 0) + m["value"]
    return summed


def test_second_request_is_a_cache_hit_with_the_same_explanation(toy_anchor):
    service = make_service(toy_anchor)
    first = service.handle(ExplainRequest(rows=ROW))
    second = service.handle(ExplainRequest(rows=ROW))
    assert [e["cached"] for e in (first["explanations"][0], second["explanations"][0])] == [False, True]
    assert first["names"] == second["names"] == first["explanations"][0]["anchor"]
    other_seed = service.handle(ExplainRequest(rows=ROW, seed=2))
    other_params = service.handle(ExplainRequest(rows=ROW, params=ExplainParams(threshold=0.9)))
    assert not other_seed["explanations"][0]["cached"] and not other_params["explanations"][0]["cached"]
    metrics = keyed(service.metrics.drain())
    assert metrics[("glassbox_explainer_cache_hits_total", ())] == 1
    assert metrics[("glassbox_explainer_cache_misses_total", ())] == 3
    assert metrics[("glassbox_explainer_explanations_total", ())] == 3
    assert metrics[("glassbox_explainer_remote_calls_total", ())] >= 3
    assert service.metrics.drain() == []  # drained once


def test_cache_size_zero_disables_the_cache(toy_anchor):
    service = make_service(toy_anchor, cache_size=0)
    service.handle(ExplainRequest(rows=ROW))
    assert not service.handle(ExplainRequest(rows=ROW))["explanations"][0]["cached"]


def test_too_many_rows_and_no_rows_are_400(toy_anchor):
    service = make_service(toy_anchor)
    with pytest.raises(InvalidInput, match="3 rows sent, at most 2"):
        service.handle(ExplainRequest(rows=np.repeat(ROW, 3, axis=0)))
    with pytest.raises(InvalidInput, match="no rows"):
        service.handle(ExplainRequest(rows=None))
    assert service.metrics.drain() == []  # rejected requests are counted by the transport, not here


def test_long_explanation_answers_a_job_handle_then_the_result(toy_anchor):
    gate = Gate(toy_anchor)
    service = make_service(toy_anchor, predictor=gate, sync_wait_s=0.2)
    handle = service.handle(ExplainRequest(rows=ROW))
    job = handle["job"]
    assert job["status"] in ("queued", "running") and job["poll"] == f"/api/v1.0/explain/jobs/{job['id']}"
    assert "explanations" not in service.poll(job["id"])
    gate.opened.set()
    deadline = time.monotonic() + 10
    while (polled := service.poll(job["id"]))["job"]["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert polled["job"]["status"] == "done"
    assert polled["explanations"][0]["prediction"] == "yes"
    assert service.handle(ExplainRequest(job_id=job["id"])) == polled  # polling through predict too


def test_submit_answers_at_once(toy_anchor):
    gate = Gate(toy_anchor)
    service = make_service(toy_anchor, predictor=gate)
    start = time.monotonic()
    handle = service.handle(ExplainRequest(rows=ROW, submit=True))
    assert time.monotonic() - start < 1.0 and handle["job"]["status"] in ("queued", "running")
    gate.opened.set()


def test_overload_is_refused_at_once_not_queued(toy_anchor):
    gate = Gate(toy_anchor)
    service = make_service(toy_anchor, predictor=gate, max_pending=2)
    service.handle(ExplainRequest(rows=ROW, submit=True))
    service.handle(ExplainRequest(rows=ROW, seed=2, submit=True))
    start = time.monotonic()
    with pytest.raises(Overloaded, match="explainer busy: 2 explanations running or waiting") as caught:
        service.handle(ExplainRequest(rows=ROW, seed=3))
    assert caught.value.status_code == 503 and time.monotonic() - start < 1.0
    gate.opened.set()
    deadline = time.monotonic() + 20
    while service.jobs.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.jobs.pending == 0
    assert service.handle(ExplainRequest(rows=ROW, seed=3))["explanations"]  # capacity is back
    assert (
        keyed(service.metrics.drain())[("glassbox_explainer_failures_total", (("reason", "overloaded"),))]
        == 1
    )


def test_model_down_fails_the_job_with_its_status(toy_anchor):
    gate = Gate(toy_anchor, fail=UpstreamUnavailable("model at http://m is unreachable"))
    gate.opened.set()
    service = make_service(toy_anchor, predictor=gate)
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        service.handle(ExplainRequest(rows=ROW))
    handle = service.handle(ExplainRequest(rows=ROW, seed=4, submit=True))
    deadline = time.monotonic() + 10
    while (polled := service.poll(handle["job"]["id"]))["job"][
        "status"
    ] != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert polled["job"]["error"] == {"code": 503, "message": "model at http://m is unreachable"}
    failures = keyed(service.metrics.drain())[
        ("glassbox_explainer_failures_total", (("reason", "model_unavailable"),))
    ]
    assert failures == 2


def test_unknown_job_is_404(toy_anchor):
    with pytest.raises(NotFound, match="no explanation job 'nope'"):
        make_service(toy_anchor).poll("nope")
