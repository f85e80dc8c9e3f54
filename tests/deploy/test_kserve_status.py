"""`glassbox deploy status/wait --protocol v2`: InferenceService status through the real kubernetes client,
answered by recorded API bodies over loopback (no API server runs here; see tests/data/deploy/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glassbox.cli import main
from glassbox.deploy.errors import DeploymentNotFound, NotAvailable
from glassbox.deploy.kserve_status import read_isvc_status
from glassbox.deploy.validate import crd_validators, custom_errors
from glassbox.deploy.wait import wait_available

DATA = Path(__file__).resolve().parents[1] / "data/deploy"
PATH = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{}"
BODIES = sorted(DATA.glob("isvc-*.json"))


def body(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


@pytest.mark.parametrize("path", BODIES, ids=lambda p: p.stem)
def test_recorded_bodies_match_kserves_crd(path):
    """Spec and status alike: a status field KServe does not write would be refused."""
    doc = json.loads(path.read_text())
    assert custom_errors(crd_validators(DATA.parent), doc) == []


def test_ready_when_every_component_is(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-ready")))
    status = read_isvc_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert recorded_kube_api.requests == [("GET", PATH.format("loanclassifier"))]
    assert status.available and not status.failed
    assert [(c.name, c.available_replicas) for c in status.components] == [("predictor", 1), ("explainer", 1)]
    assert status.summary() == "loanclassifier: Available (2/2 components ready)"


def test_creating_says_what_kserve_waits_for(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-creating")))
    status = read_isvc_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert not status.available and not status.failed
    assert status.summary() == (
        "loanclassifier: Creating (1/2 components ready): Deployment does not have minimum availability."
    )


def test_a_model_that_cannot_load_is_failed_with_kserves_reason(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-failed")))
    status = read_isvc_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert status.failed and status.description.startswith("ModelLoadFailed: artifact SHA-256 mismatch")


def test_stale_ready_is_not_available(recorded_kube_api):
    """Ready for generation 1 while the spec is at 2: KServe has not caught up yet."""
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-stale")))
    status = read_isvc_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert status.state == "Available" and not status.available


def test_missing_inference_service_is_not_found(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (404, body("not-found")))
    with pytest.raises(DeploymentNotFound, match="InferenceService ml/loanclassifier not found"):
        read_isvc_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")


def test_wait_follows_creating_to_ready_and_stops_at_a_failure(recorded_kube_api):
    recorded_kube_api.record(
        PATH.format("loanclassifier"),
        (404, body("not-found")),
        (200, body("isvc-creating")),
        (200, body("isvc-ready")),
    )
    api = recorded_kube_api.custom_objects_api()
    lines: list[str] = []
    statuses = wait_available(
        lambda name: read_isvc_status(api, "ml", name), ["loanclassifier"], 30, 0.01, progress=lines.append
    )
    assert statuses[0].available and len(recorded_kube_api.requests) == 3
    assert [line.split("] ", 1)[1] for line in lines] == [
        "loanclassifier: not found yet",
        "loanclassifier: Creating (1/2 components ready): Deployment does not have minimum availability.",
        "loanclassifier: Available (2/2 components ready)",
    ]
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-failed")))
    with pytest.raises(NotAvailable, match=r"loanclassifier: Failed .*ModelLoadFailed"):
        wait_available(
            lambda name: read_isvc_status(api, "ml", name), ["loanclassifier"], 30, 0.01, progress=print
        )


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: ml}}]\nusers: [{name: u, user: {}}]\n"
    )
    return path


def test_status_and_wait_through_the_cli(recorded_kube_api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", recorded_kube_api.url)))
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-ready")))
    assert main(["deploy", "status", "-n", "ml", "--protocol", "v2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "loanclassifier: Available (2/2 components ready)",
        "  predictor: 1/1",
        "  explainer: 1/1",
    ]
    # Only the InferenceService is read: the explainer is part of it, not a deployment of its own.
    assert {path for _, path in recorded_kube_api.requests} == {PATH.format("loanclassifier")}
    monkeypatch.setenv("GLASSBOX_DEPLOY_PROTOCOL", "v2")
    assert main(["deploy", "wait", "-n", "ml", "--timeout", "5"]) == 0
    assert "Available: loanclassifier" in capsys.readouterr().out
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("isvc-failed")))
    assert main(["deploy", "status", "-n", "ml", "-o", "json"]) == 3
    report = json.loads(capsys.readouterr().out)["deployments"][0]
    assert report["state"] == "Failed" and report["description"].startswith("ModelLoadFailed")


def test_smoke_on_v2_says_what_to_use_instead(capsys):
    assert main(["deploy", "smoke", "-n", "ml", "--protocol", "v2"]) == 1
    assert "on protocol v2 run `helm test`" in capsys.readouterr().err
