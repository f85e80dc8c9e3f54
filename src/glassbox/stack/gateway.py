"""The local gateway: Ambassador's Seldon routes in front of the model and explainer microservices.

In a cluster, Ambassador (or Istio) maps ``/seldon/<namespace>/<deployment>/...`` to each
SeldonDeployment's service orchestrator, and the orchestrator records
``seldon_api_executor_server_requests_seconds``. Neither Ambassador/Envoy nor the Go orchestrator
runs here, so this small ASGI reverse proxy does both jobs: it answers the same paths SeldonClient
calls (``gateway="ambassador"``) and exports the orchestrator's request histogram under the same
name and labels, so one dashboard serves the chart and the local stack.

Run with ``uvicorn --factory glassbox.stack.gateway:create_app --timeout-graceful-shutdown 3``;
configured by ``GLASSBOX_STACK_GATEWAY_*`` variables (:class:`GatewaySettings`). On SIGTERM uvicorn
closes the port at once and waits for the requests in flight; past its graceful-shutdown timeout it
cancels them, and the gateway answers those 503 instead of dropping the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from glassbox.errors import GlassboxError, NotFound, UpstreamUnavailable

# Headers that belong to one hop of the connection, never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip


# /v2/models/<name>/versions/<version>[/infer|/ready]: routed as /v2/models/<name>[/infer|/ready].
V2_VERSIONED = re.compile(r"(?P<model>/v2/models/[^/]+)/versions/[^/]+(?P<rest>/infer|/ready)?")


class GatewaySettings(BaseSettings):
    """Where the gateway listens for which deployment and where it forwards."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_STACK_GATEWAY_", extra="ignore")

    model_url: str = Field(description="Base URL of the model microservice, e.g. http://127.0.0.1:9000.")
    explainer_url: str = Field(
        "", description="Base URL of the explainer microservice; empty = no explain routes."
    )
    namespace: str = Field("default", description="The <namespace> path segment.")
    deployment: str = Field("loanclassifier", description="The model's <deployment> path segment.")
    predictor: str = Field("default", description="The <predictor> segment of the explain route.")
    timeout: float = Field(
        120.0, description="Seconds to wait for an upstream answer (explanations are slow)."
    )
    max_connections: int = Field(64, description="Pooled connections per upstream.")
    protocol: Literal["seldon", "v2"] = Field(
        "seldon",
        description="seldon: Ambassador's Seldon routes; v2: the Open Inference Protocol's /v2/... paths "
        "passed through to the MLServer serving the named model (as KServe's ingress does by host).",
    )


@dataclass(frozen=True)
class Route:
    """One gateway path and where it goes."""

    method: str
    path: str
    upstream: str  # base URL
    upstream_path: str
    deployment_name: str
    service: str  # the orchestrator's ``service`` metric label
    # Recorded in Seldon's orchestrator histogram: not V2 routes (KServe has no orchestrator; MLServer
    # records its own requests).
    seldon_metric: bool = True

    def describe(self) -> str:
        return f"{self.method} {self.path}"


def build_routes(settings: GatewaySettings) -> list[Route]:
    """The Ambassador paths SeldonClient uses, for the model and (if configured) the explainer."""
    if settings.protocol == "v2":
        return build_v2_routes(settings)
    ns, dep = settings.namespace, settings.deployment
    explainer = f"{dep}-explainer"
    deployments = [(dep, settings.model_url)]
    if settings.explainer_url:
        deployments.append((explainer, settings.explainer_url))
    routes: list[Route] = []
    for name, upstream in deployments:
        prefix = f"/seldon/{ns}/{name}"
        for version in ("v1.0", "v0.1"):
            for service in ("predictions", "feedback"):
                path = f"/api/{version}/{service}"
                routes.append(Route("POST", prefix + path, upstream, path, name, service))
        routes.append(
            Route("GET", f"{prefix}/api/v1.0/metadata", upstream, "/api/v1.0/metadata", name, "metadata")
        )
        routes.append(
            Route("GET", f"{prefix}/api/v1.0/health/status", upstream, "/health/status", name, "health")
        )
    if settings.explainer_url:
        # SeldonClient.explain(gateway="ambassador") posts to
        # /seldon/<ns>/<dep>-explainer/<predictor>/api/v1.0/explain.
        # Ambassador strips the prefix; the explainer serves /api/v1.0/explain as a second URL of
        # Seldon's predict view (docs/explain.md).
        routes.append(
            Route(
                "POST",
                f"/seldon/{ns}/{explainer}/{settings.predictor}/api/v1.0/explain",
                settings.explainer_url,
                "/api/v1.0/explain",
                explainer,
                "explain",
            )
        )
    return routes


def build_v2_routes(settings: GatewaySettings) -> list[Route]:
    """V2 paths passed through unchanged: each model's own to the server that serves it (the model, and
    ``<deployment>-explainer``), the server-wide health and metadata to the model's server."""
    dep = settings.deployment
    servers = [(dep, settings.model_url)]
    if settings.explainer_url:
        servers.append((f"{dep}-explainer", settings.explainer_url))
    routes: list[Route] = []
    for name, upstream in servers:
        prefix = f"/v2/models/{name}"
        for method, path, service in (
            ("POST", "/infer", "infer"),
            ("GET", "", "metadata"),
            ("GET", "/ready", "ready"),
        ):
            routes.append(
                Route(method, prefix + path, upstream, prefix + path, name, service, seldon_metric=False)
            )
    for path in ("/v2", "/v2/health/live", "/v2/health/ready"):
        routes.append(Route("GET", path, settings.model_url, path, dep, "health", seldon_metric=False))
    return routes


class Gateway:
    """Routes table, pooled upstream client and the orchestrator-compatible request histogram."""

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry | None = None):
        self.settings = settings
        self.routes = build_routes(settings)
        self._by_path: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            self._by_path.setdefault(route.path, {})[route.method] = route
        self.registry = registry or CollectorRegistry()
        self.requests = Histogram(
            "seldon_api_executor_server_requests_seconds",
            "Requests through the gateway, as Seldon's service orchestrator records them.",
            ["deployment_name", "predictor_name", "service", "method", "code"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.client: httpx.AsyncClient | None = None

    def known_routes(self) -> list[str]:
        return [r.describe() for r in self.routes]

    def match(self, method: str, path: str) -> Route:
        by_method = self._by_path.get(path.rstrip("/") or "/")
        # V2: a model's versioned paths go where its unversioned ones go, unchanged.
        versioned = V2_VERSIONED.fullmatch(path) if self.settings.protocol == "v2" else None
        if not by_method and versioned:
            by_method = {
                m: dataclasses.replace(route, path=path, upstream_path=path)
                for m, route in self._by_path.get(versioned["model"] + (versioned["rest"] or ""), {}).items()
            }
        if not by_method:
            raise NotFound(f"no route for {method} {path}")
        if method not in by_method:
            raise GlassboxError(
                f"{path} accepts {', '.join(sorted(by_method))}, not {method}", status_code=405
            )
        return by_method[method]

    async def forward(self, route: Route, request: Request) -> Response:
        assert self.client is not None, "gateway used outside its lifespan"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = route.upstream.rstrip("/") + route.upstream_path
        try:
            upstream = await self.client.request(
                route.method, url, content=await request.body(), headers=headers, params=request.query_params
            )
        except httpx.TimeoutException as exc:
            raise GlassboxError(
                f"{route.deployment_name} did not answer within {self.settings.timeout:.0f}s", status_code=504
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"{route.deployment_name} is unreachable at {route.upstream}: {exc}"
            ) from exc
        except asyncio.CancelledError as exc:
            # Only uvicorn cancels a request: its graceful-shutdown timeout ran out. The connection is
            # still open, so say why rather than close it without an answer.
            raise UpstreamUnavailable(
                f"the gateway is shutting down and {route.deployment_name} had not answered yet; retry"
            ) from exc
        passed = {
            k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}
        }
        return Response(upstream.content, status_code=upstream.status_code, headers=passed)

    async def handle(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        started = time.perf_counter()
        route: Route | None = None
        try:
            route = self.match(method, path)
            response = await self.forward(route, request)
        except GlassboxError as exc:
            body: dict = {"status": {"code": exc.status_code, "info": exc.message, "status": "FAILURE"}}
            if self.settings.protocol == "v2":  # the V2 specification's error body
                body = {"error": exc.message}
            if exc.status_code in (404, 405):
                body["routes"] = self.known_routes()
            response = JSONResponse(body, status_code=exc.status_code)
        if route is not None and route.seldon_metric:
            self.requests.labels(
                route.deployment_name,
                self.settings.predictor,
                route.service,
                method.lower(),
                str(response.status_code),
            ).observe(time.perf_counter() - started)
        return response

    async def index(self, request: Request) -> Response:
        return JSONResponse({"routes": self.known_routes()})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def health(self, request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=self.settings.max_connections, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=self.settings.timeout, limits=limits) as client:
            self.client = client
            yield
        self.client = None


def create_app(
    settings: GatewaySettings | None = None, registry: CollectorRegistry | None = None
) -> Starlette:
    gateway = Gateway(settings or GatewaySettings(), registry)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    app = Starlette(
        routes=[
            StarletteRoute("/", gateway.index, methods=["GET"]),
            StarletteRoute("/metrics", gateway.metrics, methods=["GET"]),
            StarletteRoute("/healthz", gateway.health, methods=["GET"]),
            StarletteRoute("/{path:path}", gateway.handle, methods=methods),
        ],
        lifespan=gateway.lifespan,
    )
    app.state.gateway = gateway
    return app
