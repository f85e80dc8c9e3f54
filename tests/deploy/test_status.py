"""Status and wait through the real kubernetes client, answered by recorded API bodies over loopback.

No API server can run here; tests/conftest.py's RecordedKubeAPI plays one back, so the client's own
URL building, HTTP and deserialisation all run.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from glassbox.deploy.errors import DeploymentNotFound, NotAvailable
from glassbox.deploy.status import read_status
from glassbox.deploy.wait import wait_available

DATA = Path(__file__).resolve().parents[1] / "data/deploy"
PATH = "/apis/machinelearning.seldon.io/v1/namespaces/ml/seldondeployments/{}"


def body(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_bodies_match_the_crd(seldon_crd_schema, path):
    doc = json.loads(path.read_text())
    if doc["kind"] == "SeldonDeployment":
        jsonschema.Draft7Validator(seldon_crd_schema).validate(doc)


def test_available_with_replica_counts(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("loanclassifier-available")))
    status = read_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert recorded_kube_api.requests == [("GET", PATH.format("loanclassifier"))]
    assert status.available and not status.failed
    assert (status.replicas, status.available_replicas) == (2, 2)
    assert status.summary() == "loanclassifier: Available (2/2 replicas)"


def test_native_explainer_counts_as_a_component(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("loanclassifier-native-available")))
    status = read_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    explainer = [c for c in status.components if c.explainer_for]
    assert [c.name for c in explainer] == ["loanclassifier-default-explainer"]
    assert (status.replicas, status.available_replicas) == (2, 2)


def test_stale_available_is_not_available(recorded_kube_api):
    """Available for generation 1 while the spec is at 2: the operator has not caught up yet."""
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("loanclassifier-stale")))
    status = read_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert status.state == "Available" and not status.available


def test_missing_deployment_is_not_found(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier-explainer"), (404, body("not-found")))
    with pytest.raises(DeploymentNotFound, match="ml/loanclassifier-explainer not found"):
        read_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier-explainer")


def test_forbidden_keeps_its_status(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (403, {"kind": "Status", "code": 403}))
    with pytest.raises(Exception) as caught:
        read_status(recorded_kube_api.custom_objects_api(), "ml", "loanclassifier")
    assert caught.value.status_code == 403


class FakeClock:
    """Time that moves only when the wait sleeps, so the test takes no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_follows_creating_to_available_with_progress(recorded_kube_api):
    recorded_kube_api.record(
        PATH.format("loanclassifier"),
        (200, body("loanclassifier-creating")),
        (200, body("loanclassifier-creating")),
        (200, body("loanclassifier-available")),
    )
    recorded_kube_api.record(
        PATH.format("loanclassifier-explainer"), (404, body("not-found")), (200, body("explainer-available"))
    )
    api, clock, lines = recorded_kube_api.custom_objects_api(), FakeClock(), []
    statuses = wait_available(
        lambda name: read_status(api, "ml", name),
        ["loanclassifier", "loanclassifier-explainer"],
        timeout_s=60,
        poll_s=5,
        progress=lines.append,
        clock=clock,
        sleep=clock.sleep,
    )
    assert [s.name for s in statuses] == ["loanclassifier", "loanclassifier-explainer"]
    assert clock.now == 10.0
    # One line per change: not found -> found creating -> available.
    explainer_ready = "loanclassifier-explainer: Available (1/1 replicas)"
    assert lines == [
        "[    0s] loanclassifier: Creating (0/1 replicas); loanclassifier-explainer: not found yet",
        f"[    5s] loanclassifier: Creating (0/1 replicas); {explainer_ready}",
        f"[   10s] loanclassifier: Available (2/2 replicas); {explainer_ready}",
    ]


def test_wait_times_out_naming_the_last_state(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier"), (200, body("loanclassifier-creating")))
    api, clock = recorded_kube_api.custom_objects_api(), FakeClock()
    with pytest.raises(
        NotAvailable, match=r"not Available after 30s: loanclassifier: Creating \(0/1 replicas\)"
    ):
        wait_available(
            lambda name: read_status(api, "ml", name),
            ["loanclassifier"],
            timeout_s=30,
            poll_s=10,
            progress=lambda _: None,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 30.0


def test_wait_stops_at_failed_with_the_operators_description(recorded_kube_api):
    recorded_kube_api.record(PATH.format("loanclassifier-explainer"), (200, body("explainer-failed")))
    api, clock = recorded_kube_api.custom_objects_api(), FakeClock()
    with pytest.raises(NotAvailable, match=r"Failed .*ErrImagePull"):
        wait_available(
            lambda name: read_status(api, "ml", name),
            ["loanclassifier-explainer"],
            timeout_s=600,
            progress=lambda _: None,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 0.0
