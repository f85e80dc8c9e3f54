"""``glassbox deploy`` end to end as far as this machine allows.

helm runs for real: every command line we build is parsed by the real binary, which then stops at the
unreachable cluster (proof that flags and arguments were accepted). status and wait run the real
kubernetes client against the recorded-answer server through a kubeconfig pointing at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glassbox.cli import main
from glassbox.deploy.errors import HelmFailed
from glassbox.deploy.helm import Helm

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/glassbox"
DATA = REPO / "tests/data/deploy"
PATH = "/apis/machinelearning.seldon.io/v1/namespaces/ml/seldondeployments/{}"


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
                "current-context": "test",
            }
        )
    )
    return path


@pytest.fixture
def unreachable_cluster(tmp_path, monkeypatch) -> Path:
    from glassbox.stack.process import free_port

    config = kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setenv("KUBECONFIG", str(config))
    return config


def body(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


@pytest.mark.helm
def test_install_args_are_accepted_by_real_helm(helm_bin, unreachable_cluster):
    helm = Helm(binary=helm_bin, namespace="ml", kube_context="test")
    args = helm.upgrade_install_args(
        "glassbox", CHART, [CHART / "examples/hpa.yaml"], ["model.replicas=2"], timeout_s=120
    )
    assert args[1:5] == ["upgrade", "--install", "glassbox", str(CHART)]
    if helm.major_version >= 4:
        assert "--wait=watcher" in args and "--rollback-on-failure" in args
    assert args[args.index("--timeout") + 1] == "120s"
    assert args[args.index("--values") + 1] == str(CHART / "examples/hpa.yaml")
    with pytest.raises(HelmFailed, match="kubernetes cluster unreachable"):
        helm.run(args)


@pytest.mark.helm
@pytest.mark.parametrize("action", ["rollback", "rollback-to", "uninstall"])
def test_rollback_and_uninstall_args_are_accepted_by_real_helm(helm_bin, unreachable_cluster, action):
    helm = Helm(binary=helm_bin, namespace="ml")
    args = {
        "rollback": helm.rollback_args("glassbox"),
        "rollback-to": helm.rollback_args("glassbox", 3, timeout_s=60),
        "uninstall": helm.uninstall_args("glassbox"),
    }[action]
    with pytest.raises(HelmFailed, match="kubernetes cluster unreachable"):
        helm.run(args)


def test_helm3_spelling_of_wait_and_atomic():
    helm = Helm(binary="/bin/true", namespace="ml")
    helm.__dict__["major_version"] = 3  # as if `helm version` said v3
    args = helm.upgrade_install_args("glassbox", "charts/glassbox")
    assert "--wait" in args and "--atomic" in args and "--rollback-on-failure" not in args
    assert "--wait" in helm.uninstall_args("glassbox")


def test_bad_settings_are_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("GLASSBOX_DEPLOY_POLL_S", "-1")
    assert main(["deploy", "wait"]) == 1
    assert (
        "bad setting (GLASSBOX_DEPLOY_* or option): poll_s: Input should be greater than 0"
        in capsys.readouterr().err
    )


def test_missing_helm_is_a_clear_error(capsys):
    code = main(["deploy", "uninstall", "--helm", "/nonexistent/helm"])
    assert code == 1
    assert "helm not found: '/nonexistent/helm'" in capsys.readouterr().err


@pytest.mark.helm
def test_install_reports_an_unreachable_cluster_without_a_traceback(helm_bin, unreachable_cluster, capsys):
    code = main(
        ["deploy", "install", "-n", "ml", "--helm", helm_bin, "--chart", str(CHART), "--timeout", "5"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "glassbox deploy install: helm upgrade --install failed (exit 1)" in err
    assert "kubernetes cluster unreachable" in err and "Traceback" not in err


@pytest.mark.helm
def test_install_refuses_bad_values_before_touching_the_cluster(helm_bin, unreachable_cluster, capsys):
    code = main(
        ["deploy", "install", "--helm", helm_bin, "--chart", str(CHART), "--set", "model.replicas=-1"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "at '/model/replicas': minimum: got -1, want 0" in err


def test_status_through_the_cli(recorded_kube_api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", recorded_kube_api.url)))
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("loanclassifier-available")))
    recorded_kube_api.record(PATH.format("loanclassifier-explainer"), (200, body("explainer-failed")))
    assert main(["deploy", "status", "-n", "ml"]) == 3  # not all Available
    out = capsys.readouterr().out
    assert "loanclassifier: Available (2/2 replicas)" in out
    assert "loanclassifier-explainer: Failed (0/1 replicas) - Deployment" in out
    assert main(["deploy", "status", "-n", "ml", "--explainer-mode", "native", "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deployments"][0]["availableReplicas"] == 2 and len(report["deployments"]) == 1


def test_status_of_a_missing_release(recorded_kube_api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", recorded_kube_api.url)))
    assert main(["deploy", "status", "-n", "ml", "--explainer-mode", "none"]) == 3
    assert (
        "loanclassifier: NotFound - SeldonDeployment ml/loanclassifier not found" in capsys.readouterr().out
    )


def test_wait_through_the_cli(recorded_kube_api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", recorded_kube_api.url)))
    monkeypatch.setenv("GLASSBOX_DEPLOY_POLL_S", "0.05")
    recorded_kube_api.record(
        PATH.format("loanclassifier"),
        (200, body("loanclassifier-creating")),
        (200, body("loanclassifier-available")),
    )
    recorded_kube_api.record(PATH.format("loanclassifier-explainer"), (200, body("explainer-available")))
    assert main(["deploy", "wait", "-n", "ml", "--timeout", "30"]) == 0
    captured = capsys.readouterr()
    assert "Available: loanclassifier, loanclassifier-explainer" in captured.out
    assert "loanclassifier: Creating (0/1 replicas)" in captured.err


def test_wait_timeout_through_the_cli(recorded_kube_api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", recorded_kube_api.url)))
    monkeypatch.setenv("GLASSBOX_DEPLOY_POLL_S", "0.05")
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("loanclassifier-creating")))
    assert main(["deploy", "wait", "-n", "ml", "--explainer-mode", "none", "--timeout", "0.2"]) == 1
    assert "glassbox deploy wait: not Available after 0s: loanclassifier: Creating" in capsys.readouterr().err
