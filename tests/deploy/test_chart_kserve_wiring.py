"""protocol: v2's wiring, run for real: the V2 servers start with the command, arguments and env the chart
renders for KServe, and answer the helm test's request.

The ServingRuntime's container (with the InferenceService's predictor.model env merged in, as KServe
does) and the explainer's custom container run as real processes from the V2 virtualenv; only what
cannot exist off-cluster is replaced: all interfaces by loopback, the fixed ports by free ones, cluster
DNS names by loopback URLs, /mnt/models by the trained artifacts, mounted paths by temporary directories.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import requests

from conftest import REPO, require
from glassbox.deploy.helm import Helm
from glassbox.stack.process import ManagedProcess, free_port

CHART = REPO / "charts/glassbox"
V2_BIN = REPO / ".venv-v2/bin"

pytestmark = [pytest.mark.helm, pytest.mark.slow]


def localise(args: list[str], ports: dict[str, int], artifacts: Path) -> list[str]:
    """The chart's arguments with the pod's addresses, ports and mount replaced by local ones."""
    local = {
        "--host": "127.0.0.1",
        "--http-port": str(ports["http"]),
        "--grpc-port": str(ports["grpc"]),
        "--metrics-port": str(ports["metrics"]),
        "--artifacts": str(artifacts),
    }
    out = []
    for arg in args:
        option, _, value = arg.partition("=")
        assert value, f"{arg}: the chart passes every option as --name=value"
        out.append(f"{option}={local.get(option, value)}")
    return out


def start(name: str, container: dict, env: dict[str, str], artifacts: Path, tmp_path: Path, processes):
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    args = localise(container["args"], ports, artifacts)
    served = next(a.split("=", 1)[1] for a in args if a.startswith("--name="))
    argv = [str(V2_BIN / container["command"][0]), *container["command"][1:], *args]
    argv.append(f"--run-dir={tmp_path / name}")
    process = ManagedProcess(
        name,
        argv,
        tmp_path / f"{name}.log",
        env=env,
        health_url=f"http://127.0.0.1:{ports['http']}{container['readinessProbe']['httpGet']['path']}",
    )
    processes.append(process.start(timeout=180))
    return f"http://127.0.0.1:{ports['http']}", served, ports


def test_v2_servers_run_as_the_chart_wires_them(helm_bin, trained_artifacts, processes, tmp_path):
    require((V2_BIN / "glassbox").exists(), f"{V2_BIN}/glassbox (make install-v2)")
    docs = Helm(binary=helm_bin, namespace="ml").render(
        "glassbox", CHART, (), ["protocol=v2", "queue.enabled=false", "model.maxRows=50"]
    )
    runtime = next(d for d in docs if d["kind"] == "ServingRuntime")["spec"]["containers"][0]
    isvc = next(d for d in docs if d["kind"] == "InferenceService")["spec"]
    model_env = {e["name"]: e["value"] for e in isvc["predictor"]["model"]["env"]}
    model_env["GLASSBOX_MODEL_OUTBOX_DIR"] = str(tmp_path / "outbox")  # the pod's volume
    model_env.pop("GLASSBOX_MODEL_MONITOR_URL", None)  # no monitor runs here
    model_url, model_name, model_ports = start(
        "model", runtime, model_env, trained_artifacts, tmp_path, processes
    )
    assert model_name == "loanclassifier"

    # The helm test pod's own request, sent where its URL points (the predictor's service, here loopback).
    pod = next(d for d in docs if d["kind"] == "Pod")
    script = pod["spec"]["containers"][0]["command"][-1]
    curl = shlex.split(script.split("|")[0].replace("\\\n", " "))
    body = curl[curl.index("-d") + 1]
    url = next(word for word in curl if word.startswith("http://"))
    assert url == f"http://loanclassifier-predictor.ml.svc.cluster.local/v2/models/{model_name}/infer"
    answer = requests.post(model_url + url.split(".svc.cluster.local", 1)[1], data=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert re.search(r"grep -q '\"outputs\"'", script) and '"outputs"' in answer.text
    # The env reached the runtime: model.maxRows=50 refuses 51 rows with a 400 naming the limit.
    rows = json.loads(body)["inputs"][0]["data"] * 51
    big = {"inputs": [{"name": "features", "shape": [51, 12], "datatype": "FP64", "data": rows}]}
    refused = requests.post(f"{model_url}/v2/models/{model_name}/infer", json=big, timeout=30)
    assert refused.status_code == 400 and "50" in refused.json()["error"], refused.text
    metrics = requests.get(f"http://127.0.0.1:{model_ports['metrics']}/metrics", timeout=10).text
    assert "glassbox_model_predictions_total" in metrics  # what the PodMonitor scrapes

    explainer = isvc["explainer"]["containers"][0]
    explainer_env = {e["name"]: e["value"] for e in explainer.get("env", [])}
    in_cluster = "http://loanclassifier-predictor.ml.svc.cluster.local"
    args = [a.replace(in_cluster, model_url) for a in explainer["args"]]
    explainer_url, explainer_name, _ = start(
        "explainer", explainer | {"args": args}, explainer_env, trained_artifacts, tmp_path, processes
    )
    answer = requests.post(f"{explainer_url}/v2/models/{explainer_name}/infer", data=body, timeout=120)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert json.loads(output["data"][0])["explanations"][0]["anchor"]
