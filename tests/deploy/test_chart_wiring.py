"""The chart's wiring, run for real: the components start with the env the chart renders.

The model, the explainer and the queue run as real processes with the environment and Secret values
from ``helm template``; only what cannot exist off-cluster is replaced (cluster DNS names by loopback
URLs, mounted paths by temporary directories). Then ``glassbox deploy smoke`` goes through the local
gateway, and the uncertain prediction must arrive in the queue under the chart's owner key.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import requests

from conftest import start_explainer_service, start_model_service
from glassbox.cli import main
from glassbox.deploy.helm import Helm
from glassbox.stack.process import ManagedProcess, free_port, venv_bin

CHART = Path(__file__).resolve().parents[2] / "charts/glassbox"

pytestmark = [pytest.mark.helm, pytest.mark.slow]


def rendered_env(docs: list[dict], container: dict) -> dict[str, str]:
    """The container's env with every secretKeyRef resolved from the rendered Secret."""
    secret = next(d for d in docs if d["kind"] == "Secret")["data"]
    return {
        e["name"]: e["value"]
        if "value" in e
        else base64.b64decode(secret[e["valueFrom"]["secretKeyRef"]["key"]]).decode()
        for e in container["env"]
    }


def seldon_container(docs: list[dict], name: str) -> dict:
    sdep = next(d for d in docs if d["kind"] == "SeldonDeployment" and d["metadata"]["name"] == name)
    return sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]


def test_components_work_together_as_the_chart_wires_them(
    helm_bin, trained_artifacts, processes, tmp_path, capsys
):
    # Every prediction is uncertain at threshold 1.0, so the smoke test's row must reach the queue.
    docs = Helm(binary=helm_bin, namespace="ml").render(
        "glassbox", CHART, (), ["model.uncertaintyThreshold=1.0"]
    )
    queue_container = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "glassbox-queue"
    )["spec"]["template"]["spec"]["containers"][0]
    queue_env = rendered_env(docs, queue_container)
    queue_port = free_port()
    queue_env |= {
        "GLASSBOX_QUEUE_HOST": "127.0.0.1",
        "GLASSBOX_QUEUE_PORT": str(queue_port),
        "GLASSBOX_QUEUE_DATABASE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "GLASSBOX_QUEUE_FEEDBACK_URL": "",
        "GLASSBOX_QUEUE_EXPLAINER_URL": "",
    }
    queue_url = f"http://127.0.0.1:{queue_port}"
    queue = ManagedProcess(
        "queue",
        [venv_bin(queue_container["command"][0]), *queue_container["command"][1:]],
        tmp_path / "queue.log",
        env=queue_env,
        health_url=queue_url + queue_container["readinessProbe"]["httpGet"]["path"],
    )
    processes.append(queue.start(timeout=60))

    # The drift and outlier monitor: the chart's command, args and env (its queue key from the Secret).
    monitor_container = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "glassbox-monitor"
    )["spec"]["template"]["spec"]["containers"][0]
    monitor_env = rendered_env(docs, monitor_container)
    assert monitor_env["GLASSBOX_MONITOR_QUEUE_URL"] == "http://glassbox-queue.ml.svc.cluster.local:8500"
    monitor_env |= {
        "GLASSBOX_MONITOR_QUEUE_URL": queue_url,
        "GLASSBOX_MONITOR_ARTIFACTS": str(trained_artifacts),
    }
    monitor_port = free_port()
    args = monitor_container["args"]
    args = [*args[: args.index("--host")], "--host", "127.0.0.1", "--port", str(monitor_port)]
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    monitor = ManagedProcess(
        "monitor",
        [venv_bin(monitor_container["command"][0]), *monitor_container["command"][1:], *args],
        tmp_path / "monitor.log",
        env=monitor_env,
        health_url=monitor_url + monitor_container["readinessProbe"]["httpGet"]["path"],
    )
    processes.append(monitor.start(timeout=120))

    model_env = rendered_env(docs, seldon_container(docs, "loanclassifier"))
    assert model_env["GLASSBOX_MODEL_QUEUE_URL"] == "http://glassbox-queue.ml.svc.cluster.local:8500"
    assert model_env["GLASSBOX_MODEL_MONITOR_URL"] == "http://glassbox-monitor.ml.svc.cluster.local:8600"
    model_env |= {"GLASSBOX_MODEL_QUEUE_URL": queue_url, "GLASSBOX_MODEL_MONITOR_URL": monitor_url}
    for mounted in ("GLASSBOX_MODEL_ARTIFACTS", "GLASSBOX_MODEL_OUTBOX_DIR"):
        model_env.pop(mounted)  # start_model_service points these at the test's directories
    model = start_model_service(trained_artifacts, tmp_path, env=model_env)
    processes.append(model.process)

    explainer_env = rendered_env(docs, seldon_container(docs, "loanclassifier-explainer"))
    explainer_env.pop("GLASSBOX_EXPLAINER_ARTIFACTS")
    explainer_env["GLASSBOX_EXPLAINER_MODEL_URL"] = f"{model.url}/api/v1.0/predictions"
    explainer = start_explainer_service(
        trained_artifacts, tmp_path, explainer_env["GLASSBOX_EXPLAINER_MODEL_URL"], env=explainer_env
    )
    processes.append(explainer.process)

    gateway_port = free_port()
    gateway = ManagedProcess(
        "gateway",
        [venv_bin("uvicorn"), "--factory", "glassbox.stack.gateway:create_app", "--host", "127.0.0.1",
         "--port", str(gateway_port)],
        tmp_path / "gateway.log",
        env={
            "GLASSBOX_STACK_GATEWAY_MODEL_URL": model.url,
            "GLASSBOX_STACK_GATEWAY_EXPLAINER_URL": explainer.url,
            "GLASSBOX_STACK_GATEWAY_NAMESPACE": "ml",
        },
        health_url=f"http://127.0.0.1:{gateway_port}/healthz",
    )  # fmt: skip
    processes.append(gateway.start(timeout=60))

    code = main(
        [
            "deploy",
            "smoke",
            "-n",
            "ml",
            "--gateway",
            "ambassador",
            "--gateway-endpoint",
            f"127.0.0.1:{gateway_port}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert '"<=50K"' in captured.out and "explain: anchor [" in captured.out

    # The model forwarded the (uncertain) prediction with the chart's owner key.
    headers = {"X-API-Key": queue_env["GLASSBOX_QUEUE_OWNER_API_KEY"]}
    deadline = time.monotonic() + 60
    records: list[dict] = []
    while time.monotonic() < deadline and not records:
        answer = requests.get(f"{queue_url}/api/v1/records", headers=headers, timeout=10)
        answer.raise_for_status()
        records = [r for r in answer.json()["records"] if r["source"] == "prediction"]
        time.sleep(0.5)
    assert records, f"nothing reached the queue; model log:\n{model.process.tail()}"
    assert records[0]["model_name"] == "loanclassifier"

    # ... and its row (every row: monitor.sample=1 by default) reached the monitor.
    def monitored_rows() -> float:
        lines = requests.get(f"{monitor_url}/metrics", timeout=10).text.splitlines()
        return sum(
            float(line.split()[-1]) for line in lines if line.startswith("glassbox_monitor_rows_total")
        )

    deadline = time.monotonic() + 60
    while monitored_rows() < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert monitored_rows() >= 1, f"nothing reached the monitor; model log:\n{model.process.tail()}"
