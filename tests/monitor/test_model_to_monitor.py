"""The real model microservice feeds the real monitor, which sends outliers to the real review queue.

Durability end to end: while the monitor is down, or the queue it sends outliers to is down, the model
answers every prediction and keeps the rows in its monitor outbox; they are delivered, each once, later.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import requests

from glassbox.stack.process import free_port

from .conftest import wait_for

pytestmark = pytest.mark.slow

FAST_RETRY = {"GLASSBOX_MODEL_RETRY_INITIAL_SECONDS": "0.2", "GLASSBOX_MODEL_RETRY_MAX_SECONDS": "0.5"}


def monitor_outbox(outbox_dir: Path) -> int:
    path = outbox_dir / "monitor-outbox.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def predict(model, rows: np.ndarray, puid: str) -> None:
    answer = model.predict({"data": {"ndarray": rows.tolist()}, "meta": {"puid": puid}})
    assert answer.status_code == 200, answer.text


def queue_records(queue, source: str) -> list[dict]:
    answer = requests.get(
        f"{queue.url}/api/v1/records",
        params={"source": source, "limit": 1000},
        headers={"X-API-Key": queue.api_key},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["records"]


def test_rows_wait_in_the_model_outbox_while_the_monitor_is_down(
    model_service_factory, monitor_factory, heldout_rows
):
    port = free_port()
    model = model_service_factory(
        env={"GLASSBOX_MODEL_MONITOR_URL": f"http://127.0.0.1:{port}", **FAST_RETRY}
    )
    for i in range(30):  # every prediction is answered while nothing listens on the monitor's port
        predict(model, heldout_rows[i * 10 : (i + 1) * 10], f"down-{i}")
    wait_for(lambda: monitor_outbox(model.outbox_dir) == 30, 30, "30 request records in the monitor outbox")

    monitor = monitor_factory(port=port)
    wait_for(lambda: monitor_outbox(model.outbox_dir) == 0, 60, "the outbox drained")
    wait_for(lambda: monitor.status()["totals"]["rows"] == 300, 30, "300 rows at the monitor")
    status = monitor.status()
    assert status["totals"]["rows"] == 300 and status["totals"]["rejected"] == 0
    samples = model.metric_samples()
    assert samples["glassbox_model_monitor_forward_spilled_total"] >= 30
    # (Which of the model's processes, REST worker or gRPC server, drains the shared outbox varies:
    # the delivered count is the monitor's, above.)
    assert samples["glassbox_model_monitor_forward_dropped_total"] == 0

    predict(model, heldout_rows[300:350], "up-0")  # and straight through once it is up
    wait_for(lambda: monitor.status()["totals"]["rows"] == 350, 30, "350 rows at the monitor")


def test_outliers_reach_the_queue_once_it_is_up(
    model_service_factory, monitor_factory, queue_service, monitored_bundle, heldout_rows
):
    monitor = monitor_factory(
        GLASSBOX_MONITOR_QUEUE_URL=queue_service.url, GLASSBOX_MONITOR_QUEUE_API_KEY=queue_service.api_key
    )
    model = model_service_factory(env={"GLASSBOX_MODEL_MONITOR_URL": monitor.url, **FAST_RETRY})
    names = monitored_bundle.manifest.feature_names
    strange = heldout_rows[:4].copy()
    strange[0, names.index("Age")] = 160  # far beyond any applicant
    strange[1, names.index("Hours per week")] = 168
    strange[2, names.index("Capital Gain")] = 5_000_000
    strange[3, names.index("Capital Loss")] = 90_000
    normal = heldout_rows[100:140]
    expected_outliers = set(np.flatnonzero(monitored_bundle.detectors().score(normal) > 1).tolist())

    predict(model, strange, "strange")  # the queue is not up yet: the monitor answers 503 ...
    predict(model, normal, "normal")
    wait_for(lambda: monitor_outbox(model.outbox_dir) >= 1, 30, "the rows kept in the model's outbox")
    assert monitor.status()["totals"]["rows"] == 0  # ... and commits nothing until the queue takes them

    queue_service.start()
    wait_for(lambda: monitor.status()["totals"]["rows"] == 44, 60, "44 rows at the monitor")
    wait_for(lambda: monitor_outbox(model.outbox_dir) == 0, 30, "the outbox drained")
    records = {r["id"]: r for r in queue_records(queue_service, "outlier")}
    expected = {f"outlier:strange:{i}" for i in range(4)} | {f"outlier:normal:{i}" for i in expected_outliers}
    assert set(records) == expected
    assert monitor.status()["totals"]["outliers"] == len(expected)  # counted once, though sent twice

    full = requests.get(
        f"{queue_service.url}/api/v1/records/outlier:strange:0",
        headers={"X-API-Key": queue_service.api_key},
        timeout=10,
    ).json()
    assert full["source"] == "outlier" and full["request_id"] == "strange"
    assert full["features"]["Age"] == 160 and full["decoded"]["Age"] == 160
    metadata = full["metadata"]
    # Age 160 is out of range (scored 1 + excess in standard deviations), though its distance alone
    # stays below the threshold that Capital Gain's long tail sets.
    assert metadata["outlier_score"] > 1 and metadata["outlier_distance"] < metadata["outlier_threshold"]
    assert next(iter(metadata["unusual_features"])) == "Age"  # the largest share of the distance
    assert metadata["out_of_range"] == {"Age": 160}  # beyond the oldest training applicant
    gain = records["outlier:strange:2"]
    assert (
        gain["source"] == "outlier"
        and gain["metadata"]["outlier_distance"] > gain["metadata"]["outlier_threshold"]
    )
    assert queue_records(queue_service, "prediction") == []  # the model forwards uncertain rows nowhere here
