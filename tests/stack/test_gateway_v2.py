"""The gateway with GLASSBOX_STACK_GATEWAY_PROTOCOL=v2, as a real uvicorn process: V2 paths passed through
by model name, errors in the V2 shape (``{"error": ...}``), nothing recorded as Seldon's orchestrator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from glassbox.errors import GlassboxError
from glassbox.stack.gateway import Gateway, GatewaySettings, build_routes
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


def test_v2_routes_go_to_the_server_of_the_named_model():
    settings = GatewaySettings(model_url="http://m", explainer_url="http://e", protocol="v2")
    routes = {r.describe(): r for r in build_routes(settings)}
    assert set(routes) == {
        "POST /v2/models/loanclassifier/infer",
        "GET /v2/models/loanclassifier",
        "GET /v2/models/loanclassifier/ready",
        "POST /v2/models/loanclassifier-explainer/infer",
        "GET /v2/models/loanclassifier-explainer",
        "GET /v2/models/loanclassifier-explainer/ready",
        "GET /v2",
        "GET /v2/health/live",
        "GET /v2/health/ready",
    }
    explain = routes["POST /v2/models/loanclassifier-explainer/infer"]
    assert (explain.upstream, explain.upstream_path) == (
        "http://e",
        "/v2/models/loanclassifier-explainer/infer",
    )
    assert routes["GET /v2/health/ready"].upstream == "http://m"
    assert not any(r.seldon_metric for r in routes.values())
    # Without an explainer, only the model's paths.
    alone = build_routes(GatewaySettings(model_url="http://m", protocol="v2"))
    assert not [r for r in alone if "explainer" in r.path]


def test_v2_errors_are_in_the_v2_shape_and_never_counted_as_seldons(tmp_path, processes):
    dead = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    gateway = start_gateway(tmp_path, processes, model_url=dead, explainer_url=dead, protocol="v2")
    unreachable = requests.post(f"{gateway}/v2/models/loanclassifier/infer", json={"inputs": []})
    assert unreachable.status_code == 503
    assert unreachable.json()["error"].startswith(f"loanclassifier is unreachable at {dead}")
    seldon_path = requests.post(f"{gateway}/seldon/default/loanclassifier/api/v1.0/predictions", json={})
    assert seldon_path.status_code == 404
    assert (
        seldon_path.json()["error"] == "no route for POST /seldon/default/loanclassifier/api/v1.0/predictions"
    )
    assert "POST /v2/models/loanclassifier/infer" in seldon_path.json()["routes"]
    wrong_method = requests.get(f"{gateway}/v2/models/loanclassifier/infer")
    assert wrong_method.status_code == 405 and "accepts POST, not GET" in wrong_method.json()["error"]
    exposition = requests.get(f"{gateway}/metrics").text
    assert [line for line in exposition.splitlines() if line.startswith("seldon_api_executor")] == []


GATEWAY = Gateway(GatewaySettings(model_url="http://m", explainer_url="http://e", protocol="v2"))
SEGMENT = st.text(
    st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=12
)


@given(
    model=st.sampled_from(["loanclassifier", "loanclassifier-explainer"]),
    version=SEGMENT,
    rest=st.sampled_from([("POST", "/infer"), ("GET", "/ready"), ("GET", "")]),
)
def test_versioned_v2_paths_go_where_the_unversioned_ones_go_unchanged(model, version, rest):
    method, suffix = rest
    path = f"/v2/models/{model}/versions/{version}{suffix}"
    route = GATEWAY.match(method, path)
    assert route.upstream == GATEWAY.match(method, f"/v2/models/{model}{suffix}").upstream
    assert route.upstream_path == route.path == path and not route.seldon_metric


@given(
    path=st.lists(SEGMENT, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    method=st.sampled_from(["GET", "POST"]),
)
def test_any_other_path_is_a_404_or_405_never_a_crash(path, method):
    known = {r.path for r in GATEWAY.routes}
    versioned = path.startswith(
        ("/v2/models/loanclassifier/versions/", "/v2/models/loanclassifier-explainer/versions/")
    )
    try:
        route = GATEWAY.match(method, path)
    except GlassboxError as exc:
        assert exc.status_code in (404, 405)
        return
    assert path.rstrip("/") in known or versioned, path
    assert route.upstream in ("http://m", "http://e")


def test_an_unknown_models_versioned_path_is_a_404():
    with pytest.raises(GlassboxError, match="no route for POST /v2/models/nope/versions/1/infer"):
        GATEWAY.match("POST", "/v2/models/nope/versions/1/infer")
