"""Uncertain rows from the V2 model reach the real review queue, through a queue outage (the outbox)."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from .support import MODEL, forwarding_env, start_v2_server, triton, wait_for

pytestmark = pytest.mark.slow


def infer_calls(server, rows: np.ndarray, request_id: str, **extra) -> list[dict]:
    tensor = {"name": "features", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    call = {"transport": "grpc", "url": f"127.0.0.1:{server.grpc}", "model": MODEL, "op": "infer"}
    return [{**call, "inputs": [tensor], "id": request_id, **extra}]


def test_uncertain_rows_reach_the_queue_through_an_outage(
    v2_bin, trained_artifacts, bundle, queue_service, adult_test_rows, tmp_path, processes
):
    queue = queue_service.start()
    model = start_v2_server(v2_bin, "model", trained_artifacts, tmp_path, env=forwarding_env(queue))
    processes.append(model.process)
    rows = adult_test_rows[:100]
    P = bundle.predict_proba(rows)
    uncertain = np.flatnonzero(P.max(1) < 0.7)
    assert 0 < len(uncertain) < len(rows)  # the default threshold separates these rows

    answers = triton(
        v2_bin,
        infer_calls(model, rows, "v2-user")
        + infer_calls(model, rows, "v2-explainer", parameters={"glassbox-traffic": "explainer"}),
    )
    assert all(a["ok"] for a in answers), answers
    expected = {f"v2-user:{r}" for r in uncertain}
    wait_for(lambda: set(queue.record_ids()) == expected, what="the uncertain rows in the queue")
    row = int(uncertain[0])
    record = requests.get(
        f"{queue.url}/api/v1/records/v2-user:{row}", headers={"X-API-Key": queue.api_key}, timeout=10
    ).json()
    assert record["request_id"] == "v2-user" and record["model_version"] == bundle.manifest.version
    assert record["features"] == dict(zip(bundle.manifest.feature_names, rows[row].tolist(), strict=True))
    assert abs(record["probabilities"][bundle.manifest.class_names[1]] - P[row, 1]) < 1e-6

    # The queue goes away: predictions still answer, the rows wait in the outbox, and arrive afterwards.
    queue.stop()
    answers = triton(v2_bin, infer_calls(model, rows, "v2-outage"))
    assert answers[0]["ok"], answers
    wait_for(
        lambda: (
            model.metric_samples("glassbox_model_forward_spilled_total").get(
                "glassbox_model_forward_spilled_total", 0
            )
            >= len(uncertain)
        ),
        what="the rows spilled to the outbox",
    )
    queue.start()
    expected |= {f"v2-outage:{r}" for r in uncertain}
    wait_for(
        lambda: set(queue.record_ids()) == expected, timeout=90, what="the outbox drained into the queue"
    )
    forwarded = model.metric_samples("glassbox_model_forwarded_total")["glassbox_model_forwarded_total"]
    assert forwarded == 2 * len(uncertain)
