"""Two real explainer microservices on one (private) Redis and a real model microservice.

A job submitted to one process is polled to completion on the other; what one computed the other
answers from the cache; a stopped Redis answers 503 naming Redis, promptly; a process killed
(SIGKILL) while running a job leaves the job to the survivor, which re-runs it once its lease is out.
The model sits behind a loopback proxy whose delay the kill test raises, so a job runs long enough
to be killed mid-way. Tests run in order: the last one kills a process.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq.job import Job
from rq.serializers import JSONSerializer

from conftest import ExplainerService, start_explainer_service, start_model_service
from glassbox.stack.process import LOOPBACK

pytestmark = pytest.mark.slow
LEASE_S = 4


class DelayingProxy:
    """Forwards the explainer's model calls to the real model after ``delay`` seconds."""

    def __init__(self, target: str):
        self.delay = 0.0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(proxy.delay)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = requests.post(target, data=body, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/api/v1.0/predictions"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxy(trained_artifacts, tmp_path_factory):
    model = start_model_service(trained_artifacts, tmp_path_factory.mktemp("model"), threads=4)
    proxy = DelayingProxy(f"{model.url}/api/v1.0/predictions")
    yield proxy
    proxy.close()
    model.process.stop()


@pytest.fixture(scope="module")
def pair(trained_artifacts, proxy, module_redis, tmp_path_factory):
    """Two explainer processes (replicas) on one Redis, started side by side."""
    env = {
        "GLASSBOX_EXPLAINER_REDIS_URL": module_redis.url,
        "GLASSBOX_EXPLAINER_JOB_LEASE_S": str(LEASE_S),
        "GLASSBOX_EXPLAINER_JOB_RETRIES": "1",
    }

    def start(name: str) -> ExplainerService:
        return start_explainer_service(trained_artifacts, tmp_path_factory.mktemp(name), proxy.url, env=env)

    with ThreadPoolExecutor(2) as pool:
        services = list(pool.map(start, ["explainer-a", "explainer-b"]))
    yield services
    for service in services:
        service.process.stop()


def submit(service: ExplainerService, rows: list, seed: int) -> dict:
    reply = service.explain({"jsonData": {"instances": rows, "seed": seed, "job": "submit"}})
    assert reply.status_code == 200, reply.text
    return reply.json()["jsonData"]["job"]


def poll(service: ExplainerService, job: dict) -> dict:
    reply = requests.get(service.url + job["poll"], timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def poll_until_finished(
    service: ExplainerService, job: dict, timeout: float
) -> tuple[dict, list[tuple[float, dict]]]:
    """The finished job body and every job state seen on the way, with the monotonic time of its poll."""
    seen: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while True:
        body = poll(service, job)
        seen.append((time.monotonic(), body["job"]))
        if body["job"]["status"] in ("done", "failed"):
            return body, seen
        assert time.monotonic() < deadline, seen[-3:]
        time.sleep(0.1)


def cache_hits(service: ExplainerService) -> float:
    text = requests.get(service.metrics_url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "glassbox_explainer_cache_hits_total"
    )


def test_a_job_submitted_on_one_process_is_polled_to_completion_on_the_other(pair, adult_test_rows):
    first, second = pair
    job = submit(first, adult_test_rows[:2].tolist(), seed=21)
    assert job["status"] == "queued" and job["poll"] == f"/api/v1.0/explain/jobs/{job['id']}"
    body, _ = poll_until_finished(second, job, timeout=120)
    assert body["job"]["status"] == "done" and len(body["explanations"]) == 2
    assert all(e["seed"] == 21 and not e["cached"] for e in body["explanations"])
    via_predict = second.explain({"jsonData": {"job_id": job["id"]}})
    assert via_predict.status_code == 200, via_predict.text
    assert via_predict.json()["jsonData"]["explanations"] == body["explanations"]
    assert poll(first, job) == body  # one record, whichever process answers


def test_what_one_process_computed_is_a_cache_hit_on_the_other(pair, adult_test_rows):
    first, second = pair
    payload = {"jsonData": {"instances": [adult_test_rows[7].tolist()], "seed": 22}}
    computed = first.explain(payload)
    assert computed.status_code == 200, computed.text
    assert computed.json()["jsonData"]["explanations"][0]["cached"] is False
    hits_before = cache_hits(second)
    hit = second.explain(payload)
    assert hit.status_code == 200, hit.text
    assert hit.json()["jsonData"]["explanations"][0]["cached"] is True
    assert hit.json()["jsonData"]["names"] == computed.json()["jsonData"]["names"]
    assert cache_hits(second) == hits_before + 1


def test_redis_stopped_is_a_prompt_503_naming_redis_then_service_resumes(pair, module_redis, adult_test_rows):
    first, second = pair
    done = submit(first, [adult_test_rows[8].tolist()], seed=23)
    poll_until_finished(first, done, timeout=120)
    module_redis.stop()
    try:
        where = f"Redis at redis://127.0.0.1:{module_redis.port}/0"
        for service in pair:
            start = time.monotonic()
            reply = service.explain({"jsonData": {"instances": [adult_test_rows[9].tolist()]}})
            assert reply.status_code == 503 and where in reply.json()["status"]["info"], reply.text
            polled = requests.get(service.url + done["poll"], timeout=10)
            assert polled.status_code == 503 and where in polled.json()["status"]["info"], polled.text
            assert time.monotonic() - start < 10  # two requests, each bounded by the socket timeouts
    finally:
        module_redis.start()  # same port, empty
    deadline = time.monotonic() + 60
    while (
        reply := second.explain({"jsonData": {"instances": [adult_test_rows[9].tolist()]}})
    ).status_code != 200:
        assert reply.status_code == 503 and time.monotonic() < deadline, reply.text
        time.sleep(0.5)
    assert reply.json()["jsonData"]["explanations"][0]["cached"] is False  # the new Redis is empty


def test_a_process_killed_mid_job_leaves_the_job_to_the_survivor(pair, proxy, module_redis, adult_test_rows):
    proxy.delay = 0.3  # ~12 model calls a row: a job of 3 rows runs for seconds
    job = submit(pair[0], adult_test_rows[10:13].tolist(), seed=24)
    client = redis.Redis.from_url(module_redis.url)
    deadline = time.monotonic() + 60
    while (state := poll(pair[0], job)["job"])["status"] != "running":
        assert state["status"] == "queued" and time.monotonic() < deadline, state
        time.sleep(0.05)
    # Which process runs it: rq's record of the job names its worker, whose record names the pid.
    worker = Job.fetch(job["id"], connection=client, serializer=JSONSerializer).worker_name
    pid = int(client.hget(f"rq:worker:{worker}", "pid"))
    victim = next(s for s in pair if os.getpgid(pid) == s.process.pid)
    survivor = next(s for s in pair if s is not victim)
    victim.process.kill()
    killed_at = time.monotonic()
    proxy.delay = 0.0
    body, seen = poll_until_finished(survivor, job, timeout=120)
    assert body["job"]["status"] == "done" and len(body["explanations"]) == 3
    assert body["job"]["attempt"] == 2 and "stopped (no heartbeat for 4s)" in body["job"]["note"]
    # The dead process's attempt shows 'running' until its lease is out, not longer (a poll's margin).
    first_run = [at for at, state in seen if state["status"] == "running" and "attempt" not in state]
    assert not first_run or first_run[-1] - killed_at < LEASE_S + 5
    rerun = [at for at, state in seen if state.get("attempt") == 2]
    assert rerun and rerun[0] - killed_at < LEASE_S + 5
