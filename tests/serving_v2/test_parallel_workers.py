"""MLServer's parallel inference workers (its default is one): the runtime loads in a worker process,
and glassbox_model_* reach /metrics through MLServer's multiprocess files."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from .support import start_v2_server, wait_for

pytestmark = pytest.mark.slow

ROW = [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]


def test_one_parallel_worker_predicts_and_reports(v2_bin, trained_artifacts, bundle, tmp_path, processes):
    server = start_v2_server(
        v2_bin, "model", trained_artifacts, tmp_path, extra_args=("--parallel-workers", "1")
    )
    processes.append(server.process)
    body = {"inputs": [{"name": "features", "shape": [3, 12], "datatype": "FP64", "data": ROW * 3}]}
    answer = requests.post(server.infer_url, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    probabilities = answer.json()["outputs"][0]["data"]
    np.testing.assert_allclose(
        probabilities, np.tile(bundle.predict_proba(np.array([ROW]))[0], 3), atol=1e-12
    )
    refused = requests.post(server.infer_url, json={"inputs": []}, timeout=30)
    assert refused.status_code == 400 and "no inputs" in refused.json()["error"]

    def counted() -> bool:
        samples = server.metric_samples("glassbox_model_")
        predictions = sum(v for k, v in samples.items() if k.startswith("glassbox_model_predictions_total"))
        rejections = sum(
            v for k, v in samples.items() if k.startswith("glassbox_model_input_rejections_total")
        )
        return predictions == 3 and rejections == 1

    wait_for(counted, timeout=20, what="the worker's counters on /metrics")
