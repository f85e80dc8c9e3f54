"""Settings of ``glassbox deploy``, read from ``GLASSBOX_DEPLOY_*`` environment variables.

Command-line options override them; the defaults match the chart's default values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploySettings(BaseSettings):
    """Which release, where, and with which tools."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_DEPLOY_", extra="ignore")

    release: str = Field("glassbox", description="Helm release name.")
    namespace: str = Field("default", description="Kubernetes namespace of the release.")
    chart: Path = Field(Path("charts/glassbox"), description="The chart directory (or a packaged .tgz).")
    helm_bin: str = Field("helm", description="helm binary: a name on PATH or a path.")
    kube_context: str = Field("", description="kubeconfig context; empty = the current context.")
    timeout_s: float = Field(600.0, gt=0, description="Seconds helm and `deploy wait` wait for readiness.")
    poll_s: float = Field(5.0, gt=0, description="Seconds between two status reads while waiting.")
    protocol: Literal["seldon", "v2"] = Field(
        "seldon",
        description="The chart's `protocol`: seldon (SeldonDeployments) or v2 (a KServe InferenceService, "
        "named model_name, holding the explainer too).",
    )
    model_name: str = Field(
        "loanclassifier", description="SeldonDeployment (on protocol v2: InferenceService) of the model."
    )
    explainer_name: str = Field(
        "loanclassifier-explainer",
        description="SeldonDeployment name of the explainer (chart value explainer.mode=component).",
    )
    predictor: str = Field("default", description="Predictor name of the model (native explainer path).")
    gateway: str = Field("istio", description="Seldon gateway kind for SeldonClient: istio or ambassador.")
    gateway_endpoint: str = Field("localhost:8003", description="host:port of the ingress gateway.")
