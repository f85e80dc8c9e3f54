"""Check rendered manifests against real schemas, offline.

SeldonDeployments (protocol seldon), InferenceServices and ServingRuntimes (protocol v2): the CRD's
``openAPIV3Schema``, made strict the way an API server with strict field
validation behaves (a field the schema does not name is an error instead of being pruned, so a typo
cannot vanish). Core kinds: kubernetes-validate's strict schemas, which ship in its wheel (a dev
dependency, imported only when used).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

# The oldest Kubernetes whose schemas the checks use (the chart's kubeVersion allows older ones).
KUBERNETES_VERSION = "1.33"
CORE_KINDS = frozenset(
    {"ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Pod", "Secret", "Service"}
)
# The chart's custom kinds: the API version it renders and the CRD (copies under tests/data/, Apache-2.0)
# whose first version's schema checks them. Seldon's for protocol seldon, KServe's for protocol v2.
CRD_KINDS = {
    "SeldonDeployment": ("machinelearning.seldon.io/v1", "seldon-core-1.17.1/seldondeployments-crd-v1.yaml"),
    "InferenceService": ("serving.kserve.io/v1beta1", "kserve-0.20/serving.kserve.io_inferenceservices.yaml"),
    "ServingRuntime": ("serving.kserve.io/v1alpha1", "kserve-0.20/serving.kserve.io_servingruntimes.yaml"),
}


def strict_schema(schema: object) -> object:
    """OpenAPI v3 (structural) schema to JSON Schema that refuses unknown fields."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in [k for k in out if k.startswith("x-kubernetes-")]:
        del out[key]
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def load_crd_schema(crd_path: Path) -> dict:
    """The ``openAPIV3Schema`` of the CRD's first version (libyaml's loader: the file is 800 kB)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(crd_path.read_text(), Loader=loader)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def crd_validator(crd_path: Path, strict: bool = True) -> jsonschema.Validator:
    """A validator for the first version of the CRD in ``crd_path``."""
    schema = load_crd_schema(crd_path)
    return jsonschema.Draft7Validator(strict_schema(schema) if strict else schema)


def crd_validators(crd_dir: Path) -> dict[str, tuple[str, jsonschema.Validator]]:
    """(apiVersion, strict validator) of every kind in CRD_KINDS, from the CRD copies under ``crd_dir``."""
    return {kind: (api, crd_validator(crd_dir / path)) for kind, (api, path) in CRD_KINDS.items()}


def custom_errors(validators: dict[str, tuple[str, jsonschema.Validator]], doc: dict) -> list[str]:
    """Schema errors of a custom-kind ``doc`` (a wrong apiVersion counts as one); [] when it matches."""
    api_version, validator = validators[doc["kind"]]
    if doc.get("apiVersion") != api_version:
        return [f"apiVersion: {doc.get('apiVersion')!r} is not {api_version!r}"]
    return errors(validator, doc)


def errors(validator: jsonschema.Validator, doc: dict) -> list[str]:
    """Every schema error of ``doc`` as ``path.to.field: message``."""
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def validate_core(doc: dict, version: str = KUBERNETES_VERSION) -> None:
    """Raise kubernetes_validate.ValidationError unless ``doc`` matches the strict Kubernetes schema."""
    import kubernetes_validate

    kubernetes_validate.validate(doc, version, strict=True)
