"""The queue's HTTP API: a Starlette app over ``QueueService``.

Most routes are one ``QueueService`` operation (``operation(...)`` below): authenticate the key,
read the path parameter, query or JSON body, call the service in Starlette's thread pool (the store
is blocking DB-API), answer JSON. A ``GlassboxError`` becomes its status code with
``{"error": message}``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from glassbox.annotation.export import ExportStats
from glassbox.annotation.review_page import review_routes
from glassbox.annotation.service import QueueService
from glassbox.annotation.settings import QueueSettings
from glassbox.errors import GlassboxError, InvalidInput

API = "/api/v1"
EXPORT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
FLAGS = {"true": True, "1": True, "false": False, "0": False}  # a boolean query parameter's spellings
Handler = Callable[[Request], Awaitable[Response]]


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise InvalidInput("request body is empty; send JSON")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def operation(
    name: str,
    *,
    path: str = "",
    query: bool = False,
    body: bool = False,
    status_code: int = 200,
    key: str = "",
) -> Handler:
    """A route calling ``QueueService.<name>(who, [path param], [query | JSON body])``.

    ``key`` wraps the result as ``{key: result}``; a ``None`` result answers 204.
    """

    async def handler(request: Request) -> Response:
        service: QueueService = request.app.state.service
        who = await run_in_threadpool(service.authenticate, request.headers.get("x-api-key"))
        args: list[Any] = [who]
        if path:
            args.append(request.path_params[path])
        if query:
            args.append(dict(request.query_params))
        if body:
            args.append(await read_json(request))
        result = await run_in_threadpool(getattr(service, name), *args)
        if result is None:
            return Response(status_code=204)
        return JSONResponse({key: result} if key else result, status_code=status_code)

    handler.__name__ = name
    return handler


# -- routes that are more than one operation ---------------------------------------------------
async def health(request: Request) -> Response:
    service: QueueService = request.app.state.service
    version = await run_in_threadpool(service.store.schema_version)
    return JSONResponse({"status": "ok", "schema_version": version, "database": service.store.dialect})


async def root(request: Request) -> Response:
    """``/`` is where people land (the URL ``glassbox up`` prints, a port-forward): the review page."""
    return RedirectResponse("/review", status_code=303)


async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(generate_latest, request.app.state.service.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def export(request: Request) -> Response:
    service: QueueService = request.app.state.service
    who = await run_in_threadpool(service.authenticate, request.headers.get("x-api-key"))
    fmt = request.query_params.get("format", "jsonl")
    lineage = request.query_params.get("lineage", "false").lower()
    if lineage not in FLAGS:
        raise InvalidInput(f"lineage must be true or false, not {lineage!r}")
    stats = ExportStats()

    def build() -> str:  # built whole so that the counts can go in the headers
        return "".join(service.export(who, fmt, stats, FLAGS[lineage]))

    body = await run_in_threadpool(build)
    return Response(
        body,
        media_type=EXPORT_TYPES[fmt],
        headers={
            "X-Glassbox-Exported": str(stats.exported),
            "X-Glassbox-Skipped-Unlabelled": str(stats.skipped_unlabelled),
            "Content-Disposition": f'attachment; filename="glassbox-queue-export.{fmt}"',
        },
    )


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GlassboxError)
    return JSONResponse({"error": exc.message}, status_code=exc.status_code)


def api_routes() -> list[Route]:
    record = f"{API}/records/{{record_id:path}}"
    return [
        Route(f"{API}/records/bulk", operation("intake", body=True), methods=["POST"]),
        Route(f"{API}/records", operation("list_records", query=True)),
        Route(f"{API}/records/next", operation("next_record")),
        Route(f"{record}/responses", operation("respond", path="record_id", body=True), methods=["POST"]),
        Route(
            f"{record}/explanation",
            operation("request_explanation", path="record_id"),
            methods=["POST"],
        ),
        Route(record, operation("get_record", path="record_id")),
        Route(record, operation("set_status", path="record_id", body=True), methods=["PATCH"]),
        Route(f"{API}/settings", operation("get_settings")),
        Route(f"{API}/settings", operation("put_settings", body=True), methods=["PUT"]),
        Route(f"{API}/users", operation("list_users", key="users")),
        Route(f"{API}/users", operation("create_user", body=True, status_code=201), methods=["POST"]),
        Route(f"{API}/users/{{name}}", operation("delete_user", path="name"), methods=["DELETE"]),
        Route(f"{API}/users/{{name}}", operation("update_user", path="name", body=True), methods=["PATCH"]),
        Route(f"{API}/me", operation("whoami")),
        Route(f"{API}/me/key", operation("rotate_key"), methods=["POST"]),
        Route(f"{API}/me/sign-out-everywhere", operation("sign_out_everywhere"), methods=["POST"]),
        Route(f"{API}/agreement", operation("agreement")),
        Route(f"{API}/overview", operation("overview")),
        Route(f"{API}/lineage/{{record_id:path}}", operation("lineage", path="record_id")),
        Route(f"{API}/export", export),
        Route(f"{API}/webhooks", operation("list_webhooks", key="webhooks")),
        Route(f"{API}/webhooks", operation("create_webhook", body=True, status_code=201), methods=["POST"]),
        Route(f"{API}/webhooks/{{webhook_id}}", operation("get_webhook", path="webhook_id")),
        Route(
            f"{API}/webhooks/{{webhook_id}}",
            operation("delete_webhook", path="webhook_id"),
            methods=["DELETE"],
        ),
    ]


def create_app(settings: QueueSettings | None = None, service: QueueService | None = None) -> Starlette:
    """The ASGI app (``glassbox queue serve`` runs it under uvicorn)."""
    settings = settings or QueueSettings()
    service = service or QueueService(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        service.start()
        try:
            yield
        finally:
            service.stop()

    routes = [
        Route("/", root),
        Route("/health", health),
        Route("/metrics", metrics),
        *api_routes(),
        *review_routes(),
    ]
    secret = settings.session_secret or secrets.token_urlsafe(32)
    app = Starlette(
        routes=routes,
        exception_handlers={GlassboxError: on_error},
        middleware=[Middleware(SessionMiddleware, secret_key=secret, same_site="strict", https_only=False)],
        lifespan=lifespan,
    )
    app.state.service = service
    return app
