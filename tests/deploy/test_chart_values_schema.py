"""values.schema.json refuses bad values before anything renders, and says which value is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from glassbox.deploy.errors import HelmFailed
from glassbox.deploy.helm import Helm

CHART = Path(__file__).resolve().parents[2] / "charts/glassbox"

pytestmark = pytest.mark.helm


def refusal(helm_bin: str, *sets: str) -> str:
    with pytest.raises(HelmFailed) as caught:
        Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, (), sets)
    message = caught.value.message
    assert "values don't meet the specifications of the schema" in message
    return message


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("model.replicas=-1", "at '/model/replicas': minimum: got -1, want 0"),
        ("explainer.replicas=-2", "at '/explainer/replicas': minimum: got -2, want 0"),
        ("queue.replicas=-1", "at '/queue/replicas': minimum: got -1, want 0"),
        ("explainer.native.type=KernelShap", "at '/explainer/native/type': value must be 'AnchorTabular'"),
        ("explainer.mode=sidecar", "at '/explainer/mode'"),
        ("model.image.repository=", "at '/model/image/repository': minLength: got 0, want 1"),
        ("model.image=null", "at '/model': missing property 'image'"),
        ("queue.image.repository=", "at '/queue/image/repository': minLength: got 0, want 1"),
        ("model.uncertaintyThreshold=1.5", "at '/model/uncertaintyThreshold'"),
        ("model.replicaz=2", "at '/model': additional properties 'replicaz' not allowed"),
        ("podSecurityContext.runAsNonRoot=false", "at '/podSecurityContext/runAsNonRoot'"),
        ("model.artifacts.source=modelUri", "at '/model/artifacts/modelUri': minLength: got 0, want 1"),
        ("explainer.mode=native", "at '/explainer/native/modelUri': minLength: got 0, want 1"),
        # SQLite has one writer.
        ("queue.replicas=2", "at '/queue/replicas': maximum: got 2, want 1"),
        # SQLite without a volume would lose every label with the pod.
        ("queue.persistence.enabled=false", "at '/queue/persistence/enabled': value must be true"),
        ("queue.database.kind=postgresql", "at '/queue/database/url': minLength: got 0, want 1"),
    ],
)
def test_bad_values_are_refused_with_the_value_named(helm_bin, assignment, expected):
    assert expected in refusal(helm_bin, assignment)


def test_hpa_needs_a_cpu_request(helm_bin):
    message = refusal(helm_bin, "model.hpa.enabled=true", "model.resources.requests=null")
    assert "at '/model/resources': missing property 'requests'" in message


def test_good_overrides_pass(helm_bin):
    docs = Helm(binary=helm_bin, namespace="ml").render(
        "glassbox",
        CHART,
        (),
        ["model.replicas=0", "queue.database.kind=postgresql", "queue.database.url=postgresql://q@db:5432/q"],
    )
    assert any(d["kind"] == "SeldonDeployment" for d in docs)
