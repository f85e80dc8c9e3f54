"""``glassbox deploy smoke`` through a real gateway in front of real Seldon microservices.

The cluster's ingress gateway cannot run here; the local stack's gateway answers the same Seldon paths
(``/seldon/<ns>/<deployment>/api/v1.0/predictions`` and the native explainer's ``.../explain``), and
two real ``seldon-core-microservice`` processes serve toy classes from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glassbox.cli import main
from glassbox.stack.process import ManagedProcess, free_port, seldon_microservice, venv_bin

TESTS = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """Gateway endpoint (host:port) routing namespace ml to the toy model and explainer."""
    logs = tmp_path_factory.mktemp("smoke")
    started: list[ManagedProcess] = []
    try:
        upstreams = {}
        for name, interface in (
            ("model", "conftest.ToyLoanModel"),
            ("explainer", "conftest.ToyLoanExplainer"),
        ):
            proc, ports = seldon_microservice(name, interface, logs / f"{name}.log", cwd=str(TESTS))
            started.append(proc.start(timeout=120))
            upstreams[name] = f"http://127.0.0.1:{ports['http']}"
        port = free_port()
        gateway = ManagedProcess(
            name="gateway",
            argv=[venv_bin("uvicorn"), "--factory", "glassbox.stack.gateway:create_app",
                  "--host", "127.0.0.1", "--port", str(port)],
            log_path=logs / "gateway.log",
            env={
                "GLASSBOX_STACK_GATEWAY_MODEL_URL": upstreams["model"],
                "GLASSBOX_STACK_GATEWAY_EXPLAINER_URL": upstreams["explainer"],
                "GLASSBOX_STACK_GATEWAY_NAMESPACE": "ml",
            },
            health_url=f"http://127.0.0.1:{port}/healthz",
        )  # fmt: skip
        started.append(gateway.start(timeout=60))
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(started):
            proc.stop()


def smoke(gateway: str, *extra: str) -> int:
    return main(
        ["deploy", "smoke", "-n", "ml", "--gateway", "ambassador", "--gateway-endpoint", gateway, *extra]
    )


def test_smoke_with_the_explainer_deployment(gateway, capsys):
    assert smoke(gateway) == 0
    out = capsys.readouterr().out
    assert 'predict: {"<=50K": 0.62, ">50K": 0.38}' in out
    assert 'explain: anchor ["Marital Status = Separated"]' in out


def test_smoke_with_the_native_explainer_path(gateway, capsys):
    assert smoke(gateway, "--explainer-mode", "native", "--predictor", "default") == 0
    assert 'explain: anchor ["Marital Status = Separated"]' in capsys.readouterr().out


def test_smoke_of_a_deployment_the_gateway_does_not_know(gateway, capsys):
    assert smoke(gateway, "--model-name", "nosuchmodel", "--explainer-mode", "none") == 1
    assert "glassbox deploy smoke: predict on nosuchmodel failed: 404" in capsys.readouterr().err


def test_smoke_without_a_gateway(capsys):
    assert smoke(f"127.0.0.1:{free_port()}", "--explainer-mode", "none") == 1
    assert "predict on loanclassifier: gateway unreachable" in capsys.readouterr().err
