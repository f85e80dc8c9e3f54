"""`glassbox up --protocol v2`: the model and the explainer on MLServer (Open Inference Protocol), as real
processes behind the local gateway, with the queue and Prometheus; then `glassbox down`.

The stack is brought up once for the module by the CLI in its own process (as a user runs it), and the
tests reach it only through the state file's URLs. The V2 servers run from the V2 virtualenv
(`make install-v2`). One test runs the chart's PodMonitor relabelings (protocol v2) in a real
Prometheus against the stack's MLServer, the way the Prometheus Operator would apply them to a KServe pod.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import yaml

from conftest import REPO, require
from glassbox.deploy.helm import Helm
from glassbox.stack import dashboard
from glassbox.stack.process import ManagedProcess, free_port, process_group_members
from glassbox.stack.review import QueueClient
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import read_state

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

V2_GLASSBOX = REPO / ".venv-v2/bin/glassbox"
MODEL, EXPLAINER = "loanclassifier", "loanclassifier-explainer"
# Dashboard queries that cannot have data on V2: Seldon's feedback (MLServer has no feedback endpoint,
# so the queue sends none) and the monitor's (not started here).
NO_DATA_ON_V2 = ("feedback_reward", "feedback_total", "feedback_sent", "glassbox_monitor_")


def glassbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "glassbox.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory, trained_artifacts, prometheus_bin):
    require(V2_GLASSBOX.exists(), f"{V2_GLASSBOX} (make install-v2)")
    run_dir = tmp_path_factory.mktemp("stack-v2") / "run"
    env = {
        "GLASSBOX_STACK_RUN_DIR": str(run_dir),
        "GLASSBOX_STACK_ARTIFACTS": str(trained_artifacts),
        "GLASSBOX_STACK_GATEWAY_PORT": "0",  # never the default 8003: another stack may run here
        "GLASSBOX_STACK_SCRAPE_INTERVAL": "1s",
        "GLASSBOX_STACK_MONITOR": "false",
        "GLASSBOX_STACK_V2_GLASSBOX": str(V2_GLASSBOX),
    }
    up = glassbox(env, "up", "--protocol", "v2", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    env["up_stdout"] = up.stdout
    yield env
    if read_state(StackSettings(run_dir=run_dir)):  # a test failed before `down` ran
        glassbox(env, "down")


@pytest.fixture(scope="module")
def records(env):
    return read_state(StackSettings(run_dir=env["GLASSBOX_STACK_RUN_DIR"]))


@pytest.fixture(scope="module")
def gateway(records) -> str:
    return records["gateway"].url


def tensor(rows: np.ndarray) -> dict:
    return {"name": "features", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}


def outputs(answer: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


def test_up_runs_mlserver_for_the_model_and_the_explainer(env, records):
    assert set(records) == {"queue", "model", "explainer", "gateway", "prometheus"}
    for name in ("model", "explainer"):
        argv = psutil.Process(records[name].pid).cmdline()
        # `glassbox serve-v2` replaced itself with MLServer (a script: argv[0] is its interpreter), from
        # the V2 virtualenv.
        run_dir = Path(env["GLASSBOX_STACK_RUN_DIR"]).resolve() / f"mlserver-{name}"
        assert argv[1:] == [str(V2_GLASSBOX.parent / "mlserver"), "start", str(run_dir)]
        listening = {
            c.laddr
            for pid in process_group_members(records[name].pid)
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert {a.port for a in listening} >= set(records[name].ports.values()), (name, listening)
        assert {a.ip for a in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, (name, listening)
    printed = env["up_stdout"]
    assert f"{records['gateway'].url}/v2/models/{MODEL}/infer" in printed
    assert f"{records['gateway'].url}/v2/models/{EXPLAINER}/infer" in printed


def test_predict_over_v2_through_the_gateway(gateway, adult_test_rows):
    answer = requests.post(
        f"{gateway}/v2/models/{MODEL}/infer", json={"inputs": [tensor(adult_test_rows[:3])]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == MODEL
    probabilities = outputs(body)["probabilities"]
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    metadata = requests.get(f"{gateway}/v2/models/{MODEL}").json()
    assert metadata["name"] == MODEL and len(metadata["inputs"]) == 12
    assert requests.get(f"{gateway}/v2/health/ready").status_code == 200


def test_tritonclient_predicts_through_the_gateway(gateway, adult_test_rows):
    """A client nobody here wrote (tritonclient, from the V2 virtualenv) against the gateway."""
    script = """
import json, sys
import numpy as np
import tritonclient.http as httpclient
rows = np.asarray(json.loads(sys.argv[2]), dtype=np.float64)
client = httpclient.InferenceServerClient(sys.argv[1])
assert client.is_server_ready() and client.is_model_ready("loanclassifier")
features = httpclient.InferInput("features", list(rows.shape), "FP64")
features.set_data_from_numpy(rows, binary_data=False)  # MLServer has no binary tensor extension
wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
result = client.infer("loanclassifier", [features], outputs=wanted)
# The same through the versioned path (/v2/models/<m>/versions/<v>/infer), with the served version.
versioned = client.infer("loanclassifier", [features], model_version=sys.argv[3], outputs=wanted)
assert versioned.get_response()["model_version"] == sys.argv[3]
assert (versioned.as_numpy("probabilities") == result.as_numpy("probabilities")).all()
print(json.dumps(result.as_numpy("probabilities").tolist()))
"""
    rows = adult_test_rows[:2]
    (version,) = requests.get(f"{gateway}/v2/models/{MODEL}").json()["versions"]
    done = subprocess.run(
        [
            str(V2_GLASSBOX.parent / "python"),
            "-c",
            script,
            gateway.removeprefix("http://"),
            json.dumps(rows.tolist()),
            version,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    via_triton = np.asarray(json.loads(done.stdout))
    direct = requests.post(f"{gateway}/v2/models/{MODEL}/infer", json={"inputs": [tensor(rows)]}).json()
    np.testing.assert_allclose(via_triton, outputs(direct)["probabilities"])


def test_explain_over_v2_through_the_gateway(gateway, adult_test_rows):
    answer = requests.post(
        f"{gateway}/v2/models/{EXPLAINER}/infer", json={"inputs": [tensor(adult_test_rows[:1])]}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    (explanation,) = outputs(answer.json())["explanation"]
    first = json.loads(explanation)["explanations"][0]
    assert first["anchor"] and 0.0 <= first["precision"] <= 1.0


def test_bad_input_and_unknown_model_are_4xx_naming_the_problem(gateway):
    narrow = {"inputs": [tensor(np.zeros((1, 3)))]}
    answer = requests.post(f"{gateway}/v2/models/{MODEL}/infer", json=narrow)
    assert answer.status_code == 400 and "expects 12" in answer.json()["error"], answer.text
    unknown = requests.post(f"{gateway}/v2/models/nope/infer", json=narrow)
    assert unknown.status_code == 404
    assert "no route for POST /v2/models/nope/infer" in unknown.json()["error"]
    assert f"POST /v2/models/{MODEL}/infer" in unknown.json()["routes"]


def test_uncertain_predictions_reach_the_queue(gateway, records, adult_test_rows):
    queue = QueueClient(records["queue"].url, StackSettings().queue_api_key)
    before = queue.count(source="prediction")
    answer = requests.post(
        f"{gateway}/v2/models/{MODEL}/infer", json={"inputs": [tensor(adult_test_rows[:200])]}
    )
    assert answer.status_code == 200, answer.text
    uncertain = int((outputs(answer.json())["probabilities"].max(axis=1) < 0.7).sum())
    assert uncertain > 0
    assert queue.wait_for(before + uncertain, source="prediction") == before + uncertain


def test_the_gateway_records_no_seldon_orchestrator_series_on_v2(gateway):
    """KServe has no Seldon orchestrator: its request histogram must stay empty (MLServer's own count)."""
    exposition = requests.get(f"{gateway}/metrics").text
    samples = [line for line in exposition.splitlines() if line.startswith("seldon_api_executor")]
    assert samples == []


def test_every_dashboard_query_with_v2_data_answers(gateway, records, adult_test_rows):
    """After V2 traffic (predictions, an explanation, a bad request), every panel query returns data
    from the stack's Prometheus, the request and latency panels from MLServer's families, except those
    that have nothing to read on V2."""
    requests.post(f"{gateway}/v2/models/{MODEL}/infer", json={"inputs": [tensor(adult_test_rows[:20])]})
    requests.post(f"{gateway}/v2/models/{MODEL}/infer", json={"inputs": [tensor(np.zeros((1, 3)))]})
    requests.post(
        f"{gateway}/v2/models/{EXPLAINER}/infer", json={"inputs": [tensor(adult_test_rows[5:6])]}, timeout=120
    )
    variables = {"namespace": "default", "deployment": MODEL}
    expected = [
        q for q in dashboard.panel_queries(dashboard.load()) if not any(m in q.expr for m in NO_DATA_ON_V2)
    ]
    deadline = time.monotonic() + 60
    while True:
        checks = [c for c in dashboard.check(records["prometheus"].url, variables) if c.query in expected]
        if all(c.ok for c in checks) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert len(checks) == len(expected) > 20
    failing = [f"{c.query.panel} [{c.query.ref_id}]: {c.error or 'no data'}" for c in checks if not c.ok]
    assert not failing, "\n".join(failing)
    latency = [c.expr for c in checks if c.query.panel.startswith(("Predict latency", "Explain latency"))]
    assert len(latency) == 6 and all("rest_server_request_duration_seconds_bucket" in e for e in latency)


def relabel_config(relabeling: dict) -> dict:
    """A PodMonitor relabeling (camelCase) as prometheus.yml spells it."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(key, key): value for key, value in relabeling.items()}


@pytest.mark.helm
def test_the_charts_podmonitor_relabelings_scrape_mlserver_in_a_real_prometheus(
    helm_bin, prometheus_bin, records, tmp_path
):
    """The v2 PodMonitor's relabelings in a real Prometheus, on targets labelled as Kubernetes pod
    discovery labels a KServe predictor pod (declared port 8080) and its storage initializer: the
    initializer is dropped, the predictor's target moves to MLServer's metrics port and gets the
    dashboard's labels (deployment_name, namespace, pod)."""
    metrics_port = records["model"].ports["metrics"]
    docs = Helm(binary=helm_bin, namespace="ml").render(
        "glassbox", REPO / "charts/glassbox", (), ["protocol=v2", f"kserve.metricsPort={metrics_port}"]
    )
    endpoint = next(d for d in docs if d["kind"] == "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    pod = {
        "__meta_kubernetes_namespace": "ml",
        "__meta_kubernetes_pod_name": "loanclassifier-predictor-7d9f-x2x",
        "__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice": MODEL,
        "__meta_kubernetes_pod_label_component": "predictor",
    }
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "podmonitor",
                "metrics_path": endpoint["path"],
                "static_configs": [
                    {
                        "targets": ["127.0.0.1:8080"],
                        "labels": {**pod, "__meta_kubernetes_pod_container_name": c},
                    }
                    for c in ("kserve-container", "storage-initializer")
                ],
                "relabel_configs": [relabel_config(r) for r in endpoint["relabelings"]],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = ManagedProcess(
        "prometheus-podmonitor",
        [prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path / "prometheus.log",
        health_url=f"http://127.0.0.1:{port}/-/ready",
    )  # fmt: skip
    prometheus.start(timeout=60)
    try:
        deadline = time.monotonic() + 30
        while True:
            targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10).json()["data"]
            active = targets["activeTargets"]
            if (active and active[0]["health"] == "up") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(active) == 1 and len(targets["droppedTargets"]) == 1
        (target,) = active
        assert target["health"] == "up", target
        assert target["scrapeUrl"] == f"http://127.0.0.1:{metrics_port}/metrics"
        labels = target["labels"]
        assert (labels["deployment_name"], labels["namespace"], labels["pod"]) == (
            MODEL,
            "ml",
            "loanclassifier-predictor-7d9f-x2x",
        )
        query = 'sum(glassbox_model_predictions_total{namespace="ml", deployment_name="loanclassifier"})'
        deadline = time.monotonic() + 30
        while True:
            result = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}).json()
            if result["data"]["result"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert result["data"]["result"], "Glassbox's series did not arrive with the dashboard's labels"
    finally:
        prometheus.stop()


def test_every_url_printed_opens(env, records):
    """What `up --protocol v2` prints and the state file's links: every URL one can GET answers 200."""
    lines = [line for line in env["up_stdout"].splitlines() if " POST " not in line]
    printed = [url for line in lines for url in re.findall(r"https?://[^\s\"']+", line)]
    links = [url for r in records.values() for url in r.links.values() if url.startswith("http")]
    assert len(printed) >= 6 and links, (printed, links)
    for url in printed + links:
        answer = requests.get(url, timeout=30)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:200])


def test_down_stops_every_process(env, records):
    down = glassbox(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [name for name, record in records.items() if process_group_members(record.pid)] == []
    assert not read_state(StackSettings(run_dir=env["GLASSBOX_STACK_RUN_DIR"]))


def test_demo_refuses_the_v2_protocol_before_starting_anything(tmp_path):
    """`glassbox demo` drives SeldonClient: with GLASSBOX_STACK_PROTOCOL=v2 it says so and starts nothing."""
    env = {"GLASSBOX_STACK_PROTOCOL": "v2", "GLASSBOX_STACK_RUN_DIR": str(tmp_path / "run")}
    demo = glassbox(env, "demo", "--once")
    assert demo.returncode == 1
    assert "glassbox demo drives SeldonClient" in demo.stderr and "glassbox up --protocol v2" in demo.stderr
    assert not (tmp_path / "run").exists()
