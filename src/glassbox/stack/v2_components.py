"""The model and the explainer on MLServer for ``glassbox up --protocol v2`` (Open Inference Protocol).

Each is ``glassbox serve-v2`` from the V2 virtualenv (``make install-v2``: MLServer needs its own
Starlette), on three free loopback ports (REST, gRPC, metrics), with the same ``GLASSBOX_MODEL_*`` /
``GLASSBOX_EXPLAINER_*`` environment as the Seldon components. Prometheus scrapes MLServer's metrics
port with the labels the chart's PodMonitor gives KServe's pods (``pod``, ``container``,
``deployment_name``), so the one dashboard reads both protocols.
"""

from __future__ import annotations

from pathlib import Path

from glassbox.errors import ConfigError
from glassbox.stack.components import Component
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port
from glassbox.stack.prometheus import ScrapeTarget
from glassbox.stack.settings import StackSettings

# KServe's name for the container of a ServingRuntime or a custom explainer (the PodMonitor keeps it).
KSERVE_CONTAINER = "kserve-container"


def v2_glassbox(settings: StackSettings) -> str:
    """The V2 virtualenv's ``glassbox``, or a clear error saying how to make it."""
    path = Path(settings.v2_glassbox)
    if not path.exists():
        raise ConfigError(
            f"{path} not found: the V2 servers run in their own virtualenv; make it with "
            "`make install-v2` or point GLASSBOX_STACK_V2_GLASSBOX at its bin/glassbox"
        )
    return str(path.resolve())


def model_url(base_url: str, name: str) -> str:
    """A V2 model's URL on a server (``+ /infer`` to predict)."""
    return f"{base_url}/v2/models/{name}"


def _serve_v2(
    settings: StackSettings, component: str, name: str, env: dict[str, str], extra: list[str]
) -> tuple[ManagedProcess, dict[str, int]]:
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    argv = [
        v2_glassbox(settings), "serve-v2", "--component", component,
        "--artifacts", str(settings.artifacts.resolve()), "--name", name, "--host", LOOPBACK,
        "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]),
        "--metrics-port", str(ports["metrics"]),
        "--run-dir", str((settings.run_dir / f"mlserver-{component}").resolve()), *extra,
    ]  # fmt: skip
    label = "model" if component == "model" else "explainer"
    proc = ManagedProcess(
        name=label,
        argv=argv,
        log_path=settings.logs_dir / f"{label}.log",
        env=env,
        # Ready once the model is loaded; gRPC and the metrics port answer by then too.
        health_url=f"http://{LOOPBACK}:{ports['http']}/v2/models/{name}/ready",
        ready_ports=(ports["grpc"], ports["metrics"]),
    )
    return proc, ports


def _scrape(settings: StackSettings, name: str, kserve_component: str, port: int) -> ScrapeTarget:
    """What the PodMonitor makes of a KServe pod: its pod and container, and the deployment it serves."""
    return ScrapeTarget(
        f"mlserver-{name}",
        port,
        "/metrics",
        pod=f"{settings.deployment}-{kserve_component}",
        container=KSERVE_CONTAINER,
        labels=(("deployment_name", name),),
    )


def model_v2(settings: StackSettings, queue_url: str, monitor_url: str = "") -> Component:
    """The model on MLServer (GlassboxModel), forwarding uncertain rows to the queue as on Seldon."""
    env = {
        "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": str(settings.uncertainty_threshold),
        "GLASSBOX_MODEL_QUEUE_URL": queue_url,
        "GLASSBOX_MODEL_QUEUE_API_KEY": settings.queue_api_key,
        "GLASSBOX_MODEL_OUTBOX_DIR": str((settings.run_dir / "outbox").resolve()),
    }
    if monitor_url:
        env["GLASSBOX_MODEL_MONITOR_URL"] = monitor_url
        env["GLASSBOX_MODEL_MONITOR_SAMPLE"] = str(settings.monitor_sample)
    name = settings.deployment
    proc, ports = _serve_v2(settings, "model", name, env, [])
    url = f"http://{LOOPBACK}:{ports['http']}"
    links = {"metadata": model_url(url, name)}
    return Component("model", proc, ports, url, _scrape(settings, name, "predictor", ports["metrics"]), links)


def explainer_v2(settings: StackSettings, model_base_url: str) -> Component:
    """The explainer on MLServer (GlassboxExplainer), asking the model over V2."""
    env = {}
    if settings.explainer_redis_url:
        env["GLASSBOX_EXPLAINER_REDIS_URL"] = settings.explainer_redis_url
    name = f"{settings.deployment}-explainer"
    infer = model_url(model_base_url, settings.deployment) + "/infer"
    proc, ports = _serve_v2(settings, "explainer", name, env, ["--model-url", infer])
    url = f"http://{LOOPBACK}:{ports['http']}"
    links = {"metadata": model_url(url, name)}
    scrape = _scrape(settings, name, "explainer", ports["metrics"])
    return Component("explainer", proc, ports, url, scrape, links)
