"""The monitor's HTTP side (Starlette): intake from the model, metrics, health, status.

``uvicorn --factory glassbox.monitor.app:create_app`` or ``glassbox monitor serve``. Routes:
``POST /api/v1/rows`` (the model's forwarder), ``GET /metrics`` (Prometheus text),
``GET /api/v1/status`` (windows, p-values, flags as JSON), ``GET /health/live``, ``GET /health/ready``.
Every refusal is a JSON ``{"error": ..., "reason": ...}`` with a 4xx (503 when the queue is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from glassbox.contract.monitoring import ROWS_PATH
from glassbox.contract.schema import FeatureSchema, RejectedInput
from glassbox.errors import GlassboxError
from glassbox.monitor.outliers import QueueClient
from glassbox.monitor.service import Monitor
from glassbox.monitor.settings import MonitorSettings

logger = logging.getLogger(__name__)


def build_monitor(settings: MonitorSettings) -> Monitor:
    """Load the model version (every SHA-256 checked) and its detectors; refuse a bundle without them."""
    from glassbox.pipeline.artifacts import load_bundle

    bundle = load_bundle(settings.artifacts)
    manifest = bundle.manifest
    queue = (
        QueueClient(settings.queue_url, settings.queue_api_key, settings.queue_timeout_seconds)
        if settings.queue_url
        else None
    )
    return Monitor(
        settings,
        FeatureSchema.from_manifest(manifest),
        manifest.name,
        manifest.version,
        bundle.detectors(),
        queue,
    )


def error(status: int, message: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": message, "reason": reason}, status_code=status)


def create_app(settings: MonitorSettings | None = None, monitor: Monitor | None = None) -> Starlette:
    settings = settings or MonitorSettings()
    monitor = monitor or build_monitor(settings)

    async def rows(request: Request) -> Response:
        if settings.api_key and request.headers.get("x-api-key") != settings.api_key:
            monitor.reject("unauthorized")
            return error(401, "missing or wrong X-API-Key", "unauthorized")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.max_body_bytes:
            monitor.reject("too_large")
            return error(413, f"body of {length} bytes exceeds {settings.max_body_bytes}", "too_large")
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            monitor.reject("too_large")
            return error(413, f"body of {len(body)} bytes exceeds {settings.max_body_bytes}", "too_large")
        try:
            answer = await run_in_threadpool(monitor.ingest, body)
        except RejectedInput as exc:
            return error(exc.status_code, exc.message, exc.reason)
        except GlassboxError as exc:  # UpstreamUnavailable: the queue did not take the outliers
            logger.warning("%s", exc.message)
            return error(exc.status_code, exc.message, "queue_unavailable")
        return JSONResponse(answer)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def status(request: Request) -> Response:
        return JSONResponse(monitor.status())

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model_version": monitor.model_version})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def tick() -> None:
            while True:
                await asyncio.sleep(settings.tick_seconds)
                try:
                    await run_in_threadpool(monitor.tick)
                except Exception:  # the clock must outlive any surprise
                    logger.exception("time window check failed")

        task = asyncio.create_task(tick())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = Starlette(
        routes=[
            Route(ROWS_PATH, rows, methods=["POST"]),
            Route("/metrics", metrics),
            Route("/api/v1/status", status),
            Route("/health/live", live),
            Route("/health/ready", ready),
        ],
        lifespan=lifespan,
    )
    app.state.monitor = monitor
    return app
