"""Chaos for the review queue, on a private PostgreSQL server (Debian's initdb/pg_ctl, never the shared one).

1. PostgreSQL restarted (``pg_ctl -m immediate``: a crash) under intake and labelling. A LoanClassifier
   microservice forwards every predicted row to the queue (threshold 1.01) and takes the queue's
   feedback; one thread predicts, two annotators label whatever is next. PHASE s before, PHASE s
   with the database down, PHASE s after. Then, when everything has drained: every row the model
   answered must be a record (lost = answered - records), and every completed prediction must have
   reached the model's feedback log once (lost and duplicated feedback counted there).
2. One of two queue replicas killed (SIGKILL) under labelling. Two replicas on one database, each
   with its sender (lease ``LEASE_S``); four annotators, two per replica, label RECORDS records; after
   PHASE s replica A is killed and its annotators move to B (as a load balancer would). When B's
   outbox has no pending row (A's claimed rows come due after their lease), the feedback log must hold
   every completed record once.

``python -m benchmarks.chaos_queue``. Bounded: fixed phases, request budgets and deadlines.
Results in benchmarks/results/chaos_queue.{json,md}.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

from benchmarks.common import REPO, artifacts_dir, measures, start_queue, write_results
from benchmarks.feedback import delivered, intake_records
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, seldon_microservice

PHASE = float(os.environ.get("GLASSBOX_CHAOS_PHASE_SECONDS", "10"))
RECORDS = int(os.environ.get("GLASSBOX_CHAOS_QUEUE_RECORDS", "1000"))
LEASE_S = 15  # feedback_timeout 5 s + the 5 s margin + 5
OWNER_KEY = "gbq_chaos-owner"
DEADLINE_S = 240.0


def start_model(artifacts: Path, workdir: Path, port: int, queue_url: str = "") -> ManagedProcess:
    env = {
        "GLASSBOX_MODEL_ARTIFACTS": str(artifacts),
        "GLASSBOX_MODEL_OUTBOX_DIR": str(workdir / "outbox"),
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
        "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
    }
    if queue_url:
        env |= {
            "GLASSBOX_MODEL_QUEUE_URL": queue_url,
            "GLASSBOX_MODEL_QUEUE_API_KEY": OWNER_KEY,
            "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": "1.01",  # every row goes to the queue
            "GLASSBOX_MODEL_RETRY_MAX_SECONDS": "2",
        }
    proc, _ = seldon_microservice(
        "model", "glassbox.serving.component.LoanClassifier", workdir / "model.log", env=env, http_port=port
    )
    return proc.start(timeout=180)


def queue_env(dsn: str, schema: str, model_url: str) -> dict[str, str]:
    return {
        "GLASSBOX_QUEUE_DATABASE_URL": dsn,
        "GLASSBOX_QUEUE_DATABASE_SCHEMA": schema,
        "GLASSBOX_QUEUE_DATABASE_TIMEOUT": "2",
        "GLASSBOX_QUEUE_OWNER_API_KEY": OWNER_KEY,
        "GLASSBOX_QUEUE_FEEDBACK_URL": model_url,
        "GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS": "0.5",
        "GLASSBOX_QUEUE_FEEDBACK_TIMEOUT": "5",
        "GLASSBOX_QUEUE_FEEDBACK_LEASE_SECONDS": str(LEASE_S),
        "GLASSBOX_QUEUE_FEEDBACK_BACKOFF_SECONDS": "0.5",
        "GLASSBOX_QUEUE_FEEDBACK_BACKOFF_MAX_SECONDS": "2",
        "GLASSBOX_QUEUE_FEEDBACK_MAX_ATTEMPTS": "1000",  # an outage is not a reason to give up
    }


def call(url: str, method: str, path: str, key: str = OWNER_KEY, **kwargs) -> requests.Response:
    return requests.request(method, f"{url}{path}", headers={"X-API-Key": key}, timeout=30, **kwargs)


def queue_metrics(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def wait(condition, deadline_s: float = DEADLINE_S, every: float = 0.5) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except requests.RequestException:
            pass
        time.sleep(every)
    return False


class Labeller(threading.Thread):
    """Labels whatever the queue offers next (alternating labels), until stopped or out of budget."""

    def __init__(self, urls: list[str], key: str, stop: threading.Event, budget: int = 5000):
        super().__init__(daemon=True)
        self.urls, self.key, self.stop, self.budget = list(urls), key, stop, budget
        self.status: Counter = Counter()  # HTTP status (or "unreachable") of every labelling call

    def run(self) -> None:
        for n in range(self.budget):
            if self.stop.is_set():
                return
            try:
                offered = call(self.urls[0], "GET", "/api/v1/records/next", self.key)
                record = offered.json().get("record") if offered.status_code == 200 else None
                if record is None:
                    self.status[str(offered.status_code) if offered.status_code != 200 else "idle"] += 1
                    time.sleep(0.1)
                    continue
                label = (
                    record["predicted_label"]
                    if n % 3
                    else next(c for c in record["probabilities"] if c != record["predicted_label"])
                )
                answer = call(self.urls[0], "POST", f"/api/v1/records/{record['id']}/responses", self.key,
                              json={"label": label})  # fmt: skip
                self.status[str(answer.status_code)] += 1
            except requests.RequestException:
                self.status["unreachable"] += 1
                if len(self.urls) > 1:
                    self.urls.pop(0)  # this replica is gone: the next one, as a load balancer would
                time.sleep(0.1)


def feedback_counts(outbox: Path, completed_ids: set[str]) -> dict:
    log = delivered(outbox / "feedback.sqlite3")
    return {
        "feedback_rows_at_model": sum(log.values()),
        "feedback_distinct_at_model": len(log),
        "feedback_duplicated": sum(n - 1 for n in log.values() if n > 1),
        "feedback_lost": len(completed_ids - set(log)),
    }


def completed_request_ids(url: str, key: str = OWNER_KEY) -> set[str]:
    ids: set[str] = set()
    offset = 0
    while True:
        query = {"status": "completed", "source": "prediction", "limit": 1000, "offset": offset}
        page = call(url, "GET", "/api/v1/records", key, params=query).json()
        ids |= {r["request_id"] for r in page["records"]}
        offset += len(page["records"])
        if len(page["records"]) < 1000:
            return ids


def postgres_restarted(pg, artifacts: Path, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    model_port = free_port()
    queue, queue_url = start_queue(
        workdir, "queue", queue_env(pg.dsn, "chaos_restart", f"http://{LOOPBACK}:{model_port}")
    )
    model = start_model(artifacts, workdir, model_port, queue_url)
    try:
        keys = [
            call(queue_url, "POST", "/api/v1/users", json={"name": f"a{k}"}).json()["api_key"]
            for k in range(2)
        ]
        stop = threading.Event()
        answered = Counter()
        rows = [list(r["features"].values()) for r in intake_records("restart", 400)]

        def predict() -> None:
            session = requests.Session()
            for i in range(5000):
                if stop.is_set():
                    return
                batch = [rows[i % len(rows)]]  # one row: its request id names one record at the model
                answer = session.post(f"http://{LOOPBACK}:{model_port}/api/v1.0/predictions",
                                      json={"data": {"ndarray": batch}}, timeout=30)  # fmt: skip
                answered["rows" if answer.status_code == 200 else f"http_{answer.status_code}"] += (
                    len(batch) if answer.status_code == 200 else 1
                )
                time.sleep(0.02)

        predictor = threading.Thread(target=predict, daemon=True)
        labellers = [Labeller([queue_url], key, stop) for key in keys]
        for thread in (predictor, *labellers):
            thread.start()
        time.sleep(PHASE)
        before = [Counter(t.status) for t in labellers]
        pg.stop("immediate")
        time.sleep(PHASE)
        during = [Counter(t.status) - b for t, b in zip(labellers, before, strict=True)]
        pg.start()
        back = time.monotonic()
        wait(lambda: requests.get(f"{queue_url}/health", timeout=10).status_code == 200, 60, 0.05)
        recovered_s = time.monotonic() - back
        time.sleep(PHASE)
        stop.set()
        for thread in (predictor, *labellers):
            thread.join(60)
        total = lambda: call(queue_url, "GET", "/api/v1/records", params={"limit": 1}).json()["total"]  # noqa: E731
        wait(lambda: total() >= answered["rows"])
        wait(lambda: queue_metrics(queue_url)["glassbox_queue_feedback_records{state=pending}"] == 0)
        records = total()
        completed = completed_request_ids(queue_url)
        metrics = queue_metrics(queue_url)
        labels = Counter()
        for t in labellers:
            labels.update(t.status)
        return {
            "scenario": "PostgreSQL crashed and restarted under intake and labelling",
            "rows_answered_by_model": answered["rows"],
            "records_in_queue": records,
            "records_lost": answered["rows"] - records,
            "label_calls": dict(labels),
            "label_calls_while_down": dict(sum(during, Counter())),
            "queue_answered_again_s": round(recovered_s, 2),
            "completed_predictions": len(completed),
            **feedback_counts(workdir / "outbox", completed),
            "feedback_dead": metrics["glassbox_queue_feedback_records{state=dead}"],
        }
    finally:
        model.stop()
        queue.stop()


def replica_killed(pg, artifacts: Path, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    model_port = free_port()
    model = start_model(artifacts, workdir, model_port)
    model_url = f"http://{LOOPBACK}:{model_port}"
    a, a_url = start_queue(workdir, "queue-a", queue_env(pg.dsn, "chaos_replicas", model_url))
    b, b_url = start_queue(workdir, "queue-b", queue_env(pg.dsn, "chaos_replicas", model_url))
    try:
        records = intake_records(f"replicas-{uuid.uuid4().hex[:6]}", RECORDS)
        for start in range(0, len(records), 500):
            call(
                a_url, "POST", "/api/v1/records/bulk", json={"records": records[start : start + 500]}
            ).raise_for_status()
        keys = [
            call(a_url, "POST", "/api/v1/users", json={"name": f"r{k}"}).json()["api_key"] for k in range(4)
        ]
        stop = threading.Event()
        labellers = [Labeller([a_url, b_url] if k < 2 else [b_url], key, stop) for k, key in enumerate(keys)]
        for thread in labellers:
            thread.start()
        time.sleep(PHASE)
        sent_by_a = queue_metrics(a_url)["glassbox_queue_feedback_attempts_total{outcome=sent}"]
        a.kill()
        killed = time.monotonic()
        time.sleep(PHASE)
        stop.set()
        for thread in labellers:
            thread.join(60)
        drained = wait(lambda: queue_metrics(b_url)["glassbox_queue_feedback_records{state=pending}"] == 0)
        drain_s = time.monotonic() - killed
        completed = completed_request_ids(b_url)
        labels = Counter()
        for t in labellers:
            labels.update(t.status)
        metrics = queue_metrics(b_url)
        return {
            "scenario": "one of two queue replicas killed (SIGKILL) under labelling",
            "records": RECORDS,
            "label_calls": dict(labels),
            "completed_predictions": len(completed),
            "sent_by_a_before_kill_at_least": sent_by_a,
            "sent_by_b": metrics["glassbox_queue_feedback_attempts_total{outcome=sent}"],
            **feedback_counts(workdir / "outbox", completed),
            "feedback_pending_after_drain": metrics["glassbox_queue_feedback_records{state=pending}"],
            "drained": drained,
            "kill_to_drained_s": round(drain_s, 1),
        }
    finally:
        b.stop()
        a.stop()
        model.stop()


def main() -> Path:
    # The tests' private server (initdb/pg_ctl as the postgres user), loaded by path: site-packages
    # holds another top-level "tests" package (seldon-core's).
    import importlib.util

    spec = importlib.util.spec_from_file_location("glassbox_tests_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    PrivatePostgres = conftest.PrivatePostgres

    artifacts = artifacts_dir()
    workdir = Path(tempfile.mkdtemp(prefix="glassbox-chaos-queue-"))
    pg = PrivatePostgres().start()
    try:
        results = [
            postgres_restarted(pg, artifacts, workdir / "restart"),
            replica_killed(pg, artifacts, workdir / "replicas"),
        ]
    finally:
        pg.close()
    notes = (
        f"Phases of {PHASE:.0f} s, on loopback, {os.cpu_count()} CPUs shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end). Feedback counts are read from the model microservice's own "
        "feedback log; lost = completed prediction records with no feedback there."
    )
    return write_results("chaos_queue", measures(results), ["scenario", "measure", "value"], notes)


if __name__ == "__main__":
    print(main().read_text())
