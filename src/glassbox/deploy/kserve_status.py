"""InferenceService status (chart value ``protocol: v2``), read through the kubernetes client.

KServe's controller writes ``.status.conditions`` (``PredictorReady``, ``ExplainerReady``, ``IngressReady``
and the overall ``Ready``) and ``.status.modelStatus`` (the model's load state, and why the last load
failed). This turns that into the same value ``glassbox deploy status`` and ``wait`` use for a
SeldonDeployment: Available once ``Ready`` is True for the current generation, Failed when the model
cannot load or the spec is invalid (so ``wait`` stops at once with KServe's reason), Creating otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from glassbox.deploy.errors import ClusterUnreachable, DeploymentNotFound
from glassbox.deploy.status import AVAILABLE, FAILED, ComponentStatus, SeldonStatus
from glassbox.errors import GlassboxError

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
CREATING = "Creating"
# modelStatus values meaning the model will not come up without a change (KServe's enums).
FAILED_TRANSITIONS = frozenset({"BlockedByFailedLoad", "InvalidSpec"})
FAILED_TO_LOAD = "FailedToLoad"


@dataclass(frozen=True)
class InferenceServiceStatus(SeldonStatus):
    """A SeldonStatus whose counts are components ready (predictor, explainer), not pod replicas:
    KServe's status holds no replica counts."""

    def summary(self) -> str:
        ready = f"{self.available_replicas}/{self.replicas} components ready"
        text = f"{self.name}: {self.state or 'Unknown'} ({ready})"
        return f"{text}: {self.description}" if self.description and not self.available else text


def _conditions(status: dict) -> dict[str, dict]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def _failure(status: dict) -> str:
    """KServe's reason the model cannot come up, or "" while it still may."""
    model = status.get("modelStatus") or {}
    states = model.get("states") or {}
    failed = model.get("transitionStatus") in FAILED_TRANSITIONS or FAILED_TO_LOAD in (
        states.get("activeModelState"),
        states.get("targetModelState"),
    )
    if not failed:
        return ""
    info = model.get("lastFailureInfo") or {}
    reason = info.get("reason") or model.get("transitionStatus") or FAILED_TO_LOAD
    return f"{reason}: {info['message']}" if info.get("message") else reason


def parse_isvc_status(obj: dict) -> InferenceServiceStatus:
    """An InferenceService object (as the API returns it) to ``InferenceServiceStatus``."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = _conditions(status)
    # One component per part the spec has (the predictor always; the explainer when there is one).
    parts = [p for p in ("predictor", "transformer", "explainer") if p in (obj.get("spec") or {})]
    components = tuple(
        ComponentStatus(
            name=part,
            replicas=1,
            available_replicas=int(conditions.get(f"{part.capitalize()}Ready", {}).get("status") == "True"),
        )
        for part in parts
    )
    ready = conditions.get("Ready", {})
    failure = _failure(status)
    if failure:
        state, description = FAILED, failure
    elif ready.get("status") == "True":
        state, description = AVAILABLE, ""
    else:
        state = CREATING
        description = ready.get("message") or ready.get("reason") or ""
    generation = int(metadata.get("generation") or 0)
    return InferenceServiceStatus(
        name=metadata.get("name", ""),
        namespace=metadata.get("namespace", ""),
        state=state,
        description=description,
        replicas=len(components),
        available_replicas=sum(c.available_replicas for c in components),
        components=components,
        generation=generation,
        observed_generation=int(status.get("observedGeneration") or generation),
    )


def read_isvc_status(api: client.CustomObjectsApi, namespace: str, name: str) -> InferenceServiceStatus:
    """Read one InferenceService's status; a missing one is ``DeploymentNotFound``."""
    try:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            raise DeploymentNotFound(f"InferenceService {namespace}/{name} not found") from None
        message = f"reading InferenceService {namespace}/{name}: {exc.status} {exc.reason}"
        raise GlassboxError(message, status_code=exc.status or 503) from None
    except HTTPError as exc:
        raise ClusterUnreachable(f"Kubernetes API unreachable: {exc}") from None
    return parse_isvc_status(obj)
