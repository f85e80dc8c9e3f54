"""SeldonDeployment status, read through the kubernetes client's CustomObjectsApi.

The Seldon operator writes ``.status.state`` (Creating, Available, Failed) and, per Kubernetes
Deployment it manages, ``.status.deploymentStatus[<name>]`` with ``replicas`` and
``availableReplicas``. This module turns that into a small value the CLI prints and waits on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from glassbox.deploy.errors import ClusterUnreachable, DeploymentNotFound
from glassbox.errors import GlassboxError

GROUP = "machinelearning.seldon.io"
VERSION = "v1"
PLURAL = "seldondeployments"

AVAILABLE = "Available"
FAILED = "Failed"


@dataclass(frozen=True)
class ComponentStatus:
    """One Kubernetes Deployment the operator made for a predictor (or its explainer)."""

    name: str
    replicas: int
    available_replicas: int
    explainer_for: str = ""


@dataclass(frozen=True)
class SeldonStatus:
    name: str
    namespace: str
    state: str
    description: str
    replicas: int
    available_replicas: int
    components: tuple[ComponentStatus, ...]
    generation: int = 0
    observed_generation: int = 0

    @property
    def available(self) -> bool:
        # An old "Available" from before the last change does not count: the operator must have
        # seen the current generation.
        return self.state == AVAILABLE and self.observed_generation >= self.generation

    @property
    def failed(self) -> bool:
        return self.state == FAILED

    def summary(self) -> str:
        text = f"{self.name}: {self.state or 'Unknown'} ({self.available_replicas}/{self.replicas} replicas)"
        return f"{text}: {self.description}" if self.description and not self.available else text


def parse_status(obj: dict) -> SeldonStatus:
    """A SeldonDeployment object (as the API returns it) to ``SeldonStatus``."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    components = tuple(
        ComponentStatus(
            name=name,
            replicas=int(item.get("replicas") or 0),
            available_replicas=int(item.get("availableReplicas") or 0),
            explainer_for=item.get("explainerFor") or "",
        )
        for name, item in sorted((status.get("deploymentStatus") or {}).items())
    )
    return SeldonStatus(
        name=metadata.get("name", ""),
        namespace=metadata.get("namespace", ""),
        state=status.get("state") or "",
        description=status.get("description") or "",
        replicas=sum(c.replicas for c in components),
        available_replicas=sum(c.available_replicas for c in components),
        components=components,
        generation=int(metadata.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or metadata.get("generation") or 0),
    )


def custom_objects_api(kube_context: str = "") -> client.CustomObjectsApi:
    """The API for the current kubeconfig context (or ``kube_context``), or the in-cluster config.

    The configuration is built per call rather than loaded into the client's process-wide default,
    which the client caches on first use.
    """
    configuration = client.Configuration()
    # The client reads $KUBECONFIG once at import; read it now so the current value counts.
    config_file = os.environ.get("KUBECONFIG") or None
    try:
        config.load_kube_config(config_file, kube_context or None, client_configuration=configuration)
    except config.ConfigException as kube_config_error:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            raise ClusterUnreachable(f"no Kubernetes configuration: {kube_config_error}") from None
    return client.CustomObjectsApi(client.ApiClient(configuration))


def read_status(api: client.CustomObjectsApi, namespace: str, name: str) -> SeldonStatus:
    """Read one SeldonDeployment's status; a missing one is ``DeploymentNotFound``."""
    try:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            raise DeploymentNotFound(f"SeldonDeployment {namespace}/{name} not found") from None
        message = f"reading SeldonDeployment {namespace}/{name}: {exc.status} {exc.reason}"
        raise GlassboxError(message, status_code=exc.status or 503) from None
    except HTTPError as exc:
        raise ClusterUnreachable(f"Kubernetes API unreachable: {exc}") from None
    return parse_status(obj)
