"""Rendered manifests against real schemas: the SeldonDeployment CRD and Kubernetes' own.

SeldonDeployments are checked against the openAPIV3Schema of Seldon Core 1.17.1's CRD, tightened the
way an API server with strict field validation behaves: a field the schema does not name is an error
(the API server would otherwise prune it silently, and a typo would vanish). Core kinds go through
kubernetes-validate's strict schemas, shipped offline in its wheel.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from glassbox.deploy.helm import Helm
from glassbox.deploy.validate import CORE_KINDS, errors, strict_schema, validate_core

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/glassbox"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
CASES = [None, *EXAMPLES]
IDS = ["defaults", *(p.stem for p in EXAMPLES)]
# Prometheus Operator kinds: no offline schema here; test_chart_render.py checks their fields.
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}

pytestmark = pytest.mark.helm


@pytest.fixture(scope="session")
def sdep_validator(seldon_crd_schema):
    return jsonschema.Draft7Validator(strict_schema(seldon_crd_schema))


def render(helm_bin: str, values: Path | None) -> list[dict]:
    return Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, [values] if values else [])


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_seldon_deployments_match_the_crd(helm_bin, sdep_validator, values):
    sdeps = [d for d in render(helm_bin, values) if d["kind"] == "SeldonDeployment"]
    assert sdeps
    for doc in sdeps:
        assert doc["apiVersion"] == "machinelearning.seldon.io/v1"
        assert errors(sdep_validator, doc) == [], doc["metadata"]["name"]


def test_crd_validation_catches_a_typo_and_a_wrong_type(helm_bin, sdep_validator):
    doc = next(d for d in render(helm_bin, None) if d["kind"] == "SeldonDeployment")
    typo = copy.deepcopy(doc)
    typo["spec"]["predictors"][0]["replica"] = 2
    assert any("'replica' was unexpected" in e for e in errors(sdep_validator, typo))
    wrong = copy.deepcopy(doc)
    wrong["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["env"] = {"A": "1"}
    assert any("is not of type 'array'" in e for e in errors(sdep_validator, wrong))


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_core_kinds_match_kubernetes_schemas(helm_bin, values):
    docs = render(helm_bin, values)
    kinds = {d["kind"] for d in docs}
    assert kinds <= CORE_KINDS | OPERATOR_KINDS | {"SeldonDeployment"}, kinds
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            validate_core(doc)


def test_kubernetes_validation_catches_an_unknown_field(helm_bin):
    deployment = next(d for d in render(helm_bin, None) if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        validate_core(deployment)


# Switches the examples do not cover; each must still render objects that validate.
TOGGLES = [
    ["explainer.enabled=false", "queue.enabled=false"],
    ["queue.enabled=false", "networkPolicy.enabled=false", "monitoring.annotations=false"],
    ["queue.persistence.existingClaim=queue-data", "model.outbox.existingClaim=outbox"],
    ["model.replicas=0", "explainer.replicas=0", "imagePullSecrets[0].name=registry"],
]


@pytest.mark.parametrize("sets", TOGGLES, ids=lambda sets: ",".join(sets))
def test_toggled_values_still_validate(helm_bin, sdep_validator, sets):
    docs = Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, (), sets)
    assert any(d["kind"] == "SeldonDeployment" for d in docs)
    for doc in docs:
        if doc["kind"] == "SeldonDeployment":
            assert errors(sdep_validator, doc) == [], doc["metadata"]["name"]
        elif doc["kind"] in CORE_KINDS:
            validate_core(doc)
