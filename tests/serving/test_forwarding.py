"""Uncertain rows reach the real annotation queue: exactly once, through outages and crashes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests

FAST_RETRY = {"GLASSBOX_MODEL_RETRY_INITIAL_SECONDS": "0.2", "GLASSBOX_MODEL_RETRY_MAX_SECONDS": "1"}


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def outbox_depth(outbox_dir: Path) -> int:
    path = outbox_dir / "outbox.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def forwarding_env(queue, threshold: float | None = None, **extra: str) -> dict[str, str]:
    env = {"GLASSBOX_MODEL_QUEUE_URL": queue.url, "GLASSBOX_MODEL_QUEUE_API_KEY": queue.api_key, **FAST_RETRY}
    if threshold is not None:
        env["GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD"] = str(threshold)
    return {**env, **extra}


def send(model, rows: np.ndarray, batches: int, prefix: str, headers: dict | None = None) -> list[str]:
    """``batches`` requests of ``rows`` with request ids ``<prefix>-<i>``; returns the record ids due."""
    ids = []
    for i in range(batches):
        answer = model.predict(
            {"data": {"ndarray": rows.tolist()}, "meta": {"puid": f"{prefix}-{i}"}}, headers
        )
        assert answer.status_code == 200, answer.text
        ids += [f"{prefix}-{i}:{r}" for r in range(len(rows))]
    return ids


def test_uncertain_rows_reach_the_queue_with_their_context(
    model_service_factory, queue_service, adult_test_rows, trained_artifacts
):
    from glassbox.pipeline.artifacts import load_bundle

    queue = queue_service.start()
    model = model_service_factory(env=forwarding_env(queue))
    rows = adult_test_rows[:100]
    send(model, rows, 1, "user")
    send(model, rows, 1, "explainer", headers={"X-Glassbox-Traffic": "explainer"})

    bundle = load_bundle(trained_artifacts)
    P = bundle.predict_proba(rows)
    expected = {f"user-0:{r}" for r in np.flatnonzero(P.max(1) < 0.7)}
    assert 0 < len(expected) < len(rows)  # the threshold separates these rows
    wait_for(lambda: set(queue.record_ids()) == expected, what="the uncertain rows in the queue")

    row = int(sorted(expected)[0].split(":")[1])
    record = requests.get(
        f"{queue.url}/api/v1/records/user-0:{row}", headers={"X-API-Key": queue.api_key}, timeout=10
    ).json()
    assert record["request_id"] == "user-0" and record["source"] == "prediction"
    assert record["model_version"] == bundle.manifest.version
    assert record["features"] == dict(zip(bundle.manifest.feature_names, rows[row].tolist(), strict=True))
    assert record["decoded"]["Sex"] in ("Female", "Male")
    assert abs(record["probabilities"][bundle.manifest.class_names[1]] - P[row, 1]) < 1e-6
    assert abs(record["certainty"]["max_probability"] - P[row].max()) < 1e-6

    samples = model.metric_samples()
    assert samples["glassbox_model_forwarded_total"] == len(expected)
    assert samples["glassbox_model_forward_dropped_total"] == 0


def test_queue_down_then_up_loses_nothing_and_duplicates_nothing(
    model_service_factory, queue_service, adult_test_rows
):
    model = model_service_factory(env=forwarding_env(queue_service, threshold=1.01))
    rows = adult_test_rows[:7]
    expected = send(model, rows, 20, "outage")
    send(model, rows, 1, "outage")  # a client retrying "outage-0": the same record ids, nothing new
    wait_for(lambda: outbox_depth(model.outbox_dir) == len(expected), what="every record in the outbox")
    assert model.metric_samples()["glassbox_model_forward_spilled_total"] >= len(expected)

    queue_service.start()  # the queue comes back on the same address
    wait_for(lambda: len(queue_service.record_ids()) == len(expected), what="the backlog delivered")
    time.sleep(1.5)  # a late duplicate would show up now
    ids = queue_service.record_ids()
    assert sorted(ids) == sorted(expected)  # every record, each exactly once
    wait_for(lambda: outbox_depth(model.outbox_dir) == 0, what="an empty outbox")
    samples = model.metric_samples()
    assert samples["glassbox_model_forwarded_total"] >= len(expected)
    assert samples["glassbox_model_forward_retries_total"] >= len(expected)
    assert samples["glassbox_model_outbox_depth"] == 0


def test_killed_worker_outbox_is_delivered_after_restart(
    model_service_factory, queue_service, adult_test_rows, tmp_path
):
    env = forwarding_env(queue_service, threshold=1.01)
    model = model_service_factory(env=env, workdir=tmp_path)
    expected = send(model, adult_test_rows[:10], 5, "crash")
    wait_for(lambda: outbox_depth(model.outbox_dir) == len(expected), what="records in the outbox")
    model.process.kill()  # SIGKILL: no shutdown hook runs

    assert outbox_depth(model.outbox_dir) == len(expected)
    queue_service.start()
    restarted = model_service_factory(env=env, workdir=tmp_path, name="loanclassifier-restarted")
    assert restarted.outbox_dir == model.outbox_dir
    wait_for(lambda: sorted(queue_service.record_ids()) == sorted(expected), what="the outbox delivered")
    wait_for(lambda: outbox_depth(model.outbox_dir) == 0, what="an empty outbox")


def test_full_outbox_drops_and_counts(model_service_factory, queue_service, adult_test_rows):
    model = model_service_factory(
        env=forwarding_env(queue_service, threshold=1.01, GLASSBOX_MODEL_OUTBOX_MAX_RECORDS="5")
    )
    send(model, adult_test_rows[:8], 1, "full")
    wait_for(lambda: outbox_depth(model.outbox_dir) == 5, what="a full outbox")

    def dropped() -> float:
        return model.metric_samples().get("glassbox_model_forward_dropped_total", 0)

    wait_for(lambda: dropped() == 3, what="3 dropped records counted")
    assert "dropped 3 records" in model.process.tail(200)


def test_two_workers_forward_each_record_once(model_service_factory, queue_service, adult_test_rows):
    queue_service.start()
    model = model_service_factory(env=forwarding_env(queue_service, threshold=1.01), workers=2, threads=2)
    expected = send(model, adult_test_rows[:10], 12, "workers")
    wait_for(lambda: len(queue_service.record_ids()) >= len(expected), what="every record from both workers")
    assert sorted(queue_service.record_ids()) == sorted(expected)


def test_graceful_stop_keeps_buffered_rows_in_the_outbox(
    model_service_factory, queue_service, adult_test_rows
):
    # A long linger keeps the rows in the in-memory buffer until SIGTERM arrives.
    env = forwarding_env(queue_service, threshold=1.01, GLASSBOX_MODEL_FORWARD_LINGER_SECONDS="60")
    model = model_service_factory(env=env)
    expected = send(model, adult_test_rows[:6], 2, "sigterm")
    time.sleep(0.5)
    assert outbox_depth(model.outbox_dir) == 0  # still buffered
    model.process.stop()  # SIGTERM to the process group, as Kubernetes does
    assert outbox_depth(model.outbox_dir) == len(expected)


def test_graceful_stop_keeps_grpc_buffered_rows_too(model_service_factory, queue_service, adult_test_rows):
    from seldon_core.seldon_client import SeldonClient

    env = forwarding_env(queue_service, threshold=1.01, GLASSBOX_MODEL_FORWARD_LINGER_SECONDS="60")
    model = model_service_factory(env=env)
    client = SeldonClient(microservice_endpoint=model.grpc_endpoint, transport="grpc")
    result = client.microservice(method="predict", data=adult_test_rows[:4], payload_type="ndarray")
    assert result.success, result.msg
    time.sleep(0.5)
    assert outbox_depth(model.outbox_dir) == 0  # still buffered in the gRPC server process
    model.process.stop()
    assert outbox_depth(model.outbox_dir) == 4
