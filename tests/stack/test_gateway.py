"""The gateway as a real uvicorn process: route table, 404 with the known routes, upstream errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from glassbox.stack.gateway import GatewaySettings, build_routes
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port


def start_gateway(tmp_path: Path, processes: list, **env: str) -> str:
    port = free_port()
    proc = ManagedProcess(
        name="gateway",
        argv=[sys.executable, "-m", "uvicorn", "--factory", "glassbox.stack.gateway:create_app",
              "--host", LOOPBACK, "--port", str(port)],
        log_path=tmp_path / "gateway.log",
        env={f"GLASSBOX_STACK_GATEWAY_{k.upper()}": v for k, v in env.items()},
        health_url=f"http://{LOOPBACK}:{port}/healthz",
    )  # fmt: skip
    processes.append(proc.start(timeout=30))
    return f"http://{LOOPBACK}:{port}"


def test_routes_are_the_ones_seldonclient_calls():
    routes = {
        r.describe(): r for r in build_routes(GatewaySettings(model_url="http://m", explainer_url="http://e"))
    }
    assert "POST /seldon/default/loanclassifier/api/v1.0/predictions" in routes
    assert "POST /seldon/default/loanclassifier/api/v0.1/predictions" in routes
    assert "POST /seldon/default/loanclassifier/api/v1.0/feedback" in routes
    assert "POST /seldon/default/loanclassifier-explainer/api/v1.0/predictions" in routes
    explain = routes["POST /seldon/default/loanclassifier-explainer/default/api/v1.0/explain"]
    assert (explain.upstream, explain.upstream_path) == ("http://e", "/api/v1.0/explain")


def test_without_explainer_there_is_no_explain_route():
    routes = [r.path for r in build_routes(GatewaySettings(model_url="http://m"))]
    assert not any("explainer" in path for path in routes)


def test_unknown_route_is_404_listing_the_known_ones(tmp_path, processes):
    gateway = start_gateway(tmp_path, processes, model_url=f"http://{LOOPBACK}:{free_port()}")
    reply = requests.post(f"{gateway}/seldon/other-namespace/loanclassifier/api/v1.0/predictions", json={})
    assert reply.status_code == 404
    body = reply.json()
    assert "no route for POST /seldon/other-namespace/loanclassifier" in body["status"]["info"]
    assert "POST /seldon/default/loanclassifier/api/v1.0/predictions" in body["routes"]


def test_wrong_method_is_405(tmp_path, processes):
    gateway = start_gateway(tmp_path, processes, model_url=f"http://{LOOPBACK}:{free_port()}")
    reply = requests.get(f"{gateway}/seldon/default/loanclassifier/api/v1.0/predictions")
    assert reply.status_code == 405
    assert "accepts POST" in reply.json()["status"]["info"]


def test_unreachable_upstream_is_503_naming_it_and_counted(tmp_path, processes):
    dead = f"http://{LOOPBACK}:{free_port()}"
    gateway = start_gateway(tmp_path, processes, model_url=dead)
    reply = requests.post(f"{gateway}/seldon/default/loanclassifier/api/v1.0/predictions", json={"data": {}})
    assert reply.status_code == 503
    assert f"loanclassifier is unreachable at {dead}" in reply.json()["status"]["info"]
    metrics = requests.get(f"{gateway}/metrics").text
    assert (
        'seldon_api_executor_server_requests_seconds_count{code="503",deployment_name="loanclassifier",'
        'method="post",predictor_name="default",service="predictions"} 1.0'
    ) in metrics


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_index_and_health_answer(tmp_path, processes, path):
    gateway = start_gateway(tmp_path, processes, model_url=f"http://{LOOPBACK}:{free_port()}")
    assert requests.get(gateway + path).status_code == 200
