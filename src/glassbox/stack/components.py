"""The processes of the local stack: how each is launched, on which ports, with which environment.

Each builder returns a not-yet-started :class:`~glassbox.stack.process.ManagedProcess` plus what the
rest of the stack needs to know about it (ports, base URL, metrics endpoint). Environment variable
names are the components' own settings (docs/contracts.md).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from glassbox.stack.process import LOOPBACK, SHUTDOWN_GRACE_SECONDS, ManagedProcess, seldon_microservice
from glassbox.stack.prometheus import ScrapeTarget
from glassbox.stack.settings import StackSettings

MODEL_CLASS = "glassbox.serving.component.LoanClassifier"
EXPLAINER_CLASS = "glassbox.explain.component.LoanExplainer"

# Start order: each one's dependencies come before it; ``down`` stops in reverse.
ORDER = ("queue", "monitor", "model", "explainer", "gateway", "prometheus")


@dataclass
class Component:
    """A stack process and how to reach it."""

    name: str
    process: ManagedProcess
    ports: dict[str, int]
    url: str  # base URL users (or other components) call
    scrape: ScrapeTarget | None = None
    links: dict[str, str] = field(default_factory=dict)  # human-facing URLs to print


def _url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def uvicorn_argv(factory: str, port: int) -> list[str]:
    """An ASGI app factory served by uvicorn on loopback; on SIGTERM it waits for the requests in flight
    a second less than the shutdown grace (uvicorn's own default waits for ever)."""
    return [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", LOOPBACK, "--port", str(port),
            "--no-access-log", "--timeout-graceful-shutdown", str(SHUTDOWN_GRACE_SECONDS - 1)]  # fmt: skip


def seldon_env(deployment: str, predictor: str, unit: str) -> dict[str, str]:
    """What Seldon's operator sets on the pod: the metrics' labels, and the metrics path (the wrapper's
    own default is /metrics; the operator, the chart's PodMonitor and this stack use /prometheus)."""
    return {
        "SELDON_DEPLOYMENT_ID": deployment,
        "PREDICTOR_ID": predictor,
        "PREDICTIVE_UNIT_ID": unit,
        "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",  # else custom metrics ride in every answer
    }


def queue(settings: StackSettings, port: int, model_url: str, explainer_url: str) -> Component:
    database = settings.queue_dsn or f"sqlite:///{(settings.run_dir / 'queue.db').resolve()}"
    env = {
        "GLASSBOX_QUEUE_HOST": LOOPBACK,
        "GLASSBOX_QUEUE_PORT": str(port),
        "GLASSBOX_QUEUE_DATABASE_URL": database,
        "GLASSBOX_QUEUE_OWNER_API_KEY": settings.queue_api_key,
        "GLASSBOX_QUEUE_FEEDBACK_URL": model_url,
        "GLASSBOX_QUEUE_EXPLAINER_URL": explainer_url,
    }
    proc = ManagedProcess(
        name="queue",
        # What `glassbox queue serve` runs, without building every part's CLI parser first.
        argv=uvicorn_argv("glassbox.annotation.app:create_app", port),
        log_path=settings.logs_dir / "queue.log",
        env=env,
        health_url=f"{_url(port)}/health",
    )
    return Component(
        "queue",
        proc,
        {"http": port},
        _url(port),
        ScrapeTarget("glassbox-queue", port, "/metrics", pod="glassbox-queue", container="queue"),
        links={"review page": f"{_url(port)}/review"},
    )


def monitor(settings: StackSettings, port: int, queue_url: str) -> Component:
    """The drift and outlier monitor on the model's artifacts; its outliers go to the queue."""
    env = {
        "GLASSBOX_MONITOR_ARTIFACTS": str(settings.artifacts.resolve()),
        "GLASSBOX_MONITOR_QUEUE_URL": queue_url,
        "GLASSBOX_MONITOR_QUEUE_API_KEY": settings.queue_api_key,
        "GLASSBOX_MONITOR_WINDOW_ROWS": str(settings.monitor_window_rows),
        "GLASSBOX_MONITOR_WINDOW_SECONDS": str(settings.monitor_window_seconds),
    }
    proc = ManagedProcess(
        name="monitor",
        # What `glassbox monitor serve` runs, without building every part's CLI parser first.
        argv=uvicorn_argv("glassbox.monitor.app:create_app", port),
        log_path=settings.logs_dir / "monitor.log",
        env=env,
        health_url=f"{_url(port)}/health/ready",
    )
    scrape = ScrapeTarget("glassbox-monitor", port, "/metrics", pod="glassbox-monitor", container="monitor")
    return Component(
        "monitor", proc, {"http": port}, _url(port), scrape, links={"status": f"{_url(port)}/api/v1/status"}
    )


def _seldon_component(
    name: str, interface: str, settings: StackSettings, deployment: str, unit: str, env: dict[str, str]
) -> Component:
    proc, ports = seldon_microservice(
        name,
        interface,
        settings.logs_dir / f"{name}.log",
        env={**seldon_env(deployment, settings.predictor, unit), **env},
        workers=settings.workers,
        threads=settings.threads,
    )
    scrape = ScrapeTarget(
        f"seldon-{deployment}",
        ports["metrics"],
        "/prometheus",
        pod=f"{deployment}-{settings.predictor}",
        container=unit,
    )
    links = {"metadata": f"{_url(ports['http'])}/api/v1.0/metadata"}  # the base URL itself answers 404
    return Component(name, proc, ports, _url(ports["http"]), scrape, links=links)


def model(settings: StackSettings, queue_url: str, monitor_url: str = "") -> Component:
    env = {
        "GLASSBOX_MODEL_ARTIFACTS": str(settings.artifacts.resolve()),
        "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": str(settings.uncertainty_threshold),
        "GLASSBOX_MODEL_QUEUE_URL": queue_url,
        "GLASSBOX_MODEL_QUEUE_API_KEY": settings.queue_api_key,
        "GLASSBOX_MODEL_OUTBOX_DIR": str((settings.run_dir / "outbox").resolve()),
    }
    if monitor_url:  # a sample of every prediction, through the same durable forwarding as the queue's
        env["GLASSBOX_MODEL_MONITOR_URL"] = monitor_url
        env["GLASSBOX_MODEL_MONITOR_SAMPLE"] = str(settings.monitor_sample)
    return _seldon_component("model", MODEL_CLASS, settings, settings.deployment, "classifier", env)


def explainer(settings: StackSettings, model_url: str) -> Component:
    env = {
        "GLASSBOX_EXPLAINER_ARTIFACTS": str(settings.artifacts.resolve()),
        "GLASSBOX_EXPLAINER_MODEL_URL": f"{model_url}/api/v1.0/predictions",
    }
    if settings.explainer_redis_url:  # jobs and cache shared by the explainer's gunicorn workers
        env["GLASSBOX_EXPLAINER_REDIS_URL"] = settings.explainer_redis_url
    return _seldon_component(
        "explainer", EXPLAINER_CLASS, settings, f"{settings.deployment}-explainer", "explainer", env
    )


def gateway(settings: StackSettings, port: int, model_url: str, explainer_url: str) -> Component:
    env = {
        "GLASSBOX_STACK_GATEWAY_MODEL_URL": model_url,
        "GLASSBOX_STACK_GATEWAY_EXPLAINER_URL": explainer_url,
        "GLASSBOX_STACK_GATEWAY_NAMESPACE": settings.namespace,
        "GLASSBOX_STACK_GATEWAY_DEPLOYMENT": settings.deployment,
        "GLASSBOX_STACK_GATEWAY_PREDICTOR": settings.predictor,
        "GLASSBOX_STACK_GATEWAY_PROTOCOL": settings.protocol,
    }
    argv = uvicorn_argv("glassbox.stack.gateway:create_app", port)
    proc = ManagedProcess(
        name="gateway",
        argv=argv,
        log_path=settings.logs_dir / "gateway.log",
        env=env,
        health_url=f"{_url(port)}/healthz",
    )
    scrape = ScrapeTarget("gateway", port, "/metrics", pod="gateway", container="gateway")
    endpoint = f"{LOOPBACK}:{port}"
    return Component("gateway", proc, {"http": port}, _url(port), scrape, links={"gateway": endpoint})
