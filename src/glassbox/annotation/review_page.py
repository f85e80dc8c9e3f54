"""The review page: server-rendered HTML (Jinja2), no front-end build.

An annotator signs in with their API key (kept in a signed session cookie as its hash), sees the
least certain pending record they have not answered, and labels it with a button or the keys 1…k.
The list view (``/review/records``) filters and sorts every record through the same parser and
store query as ``GET /api/v1/records`` and opens one in the same review form; the lead's view
(``/review/lead``, admin and owner) shows ``QueueService.overview``.
Forms are plain ``application/x-www-form-urlencoded`` posts, parsed with the standard library so
no multipart dependency is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from glassbox.annotation.auth import Principal, hash_key
from glassbox.annotation.record_query import MAX_OFFSET, RecordQuery, parse_record_query
from glassbox.annotation.store.base import SORTS
from glassbox.contract.records import STATUSES
from glassbox.errors import GlassboxError

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


async def _form(request: Request) -> dict[str, str]:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def _signed_in(request: Request) -> Principal | None:
    key_hash = request.session.get("key_hash")
    user = request.app.state.service.store.user_by_key_hash(key_hash) if key_hash else None
    return Principal(user["name"], user["role"]) if user else None


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def review(request: Request) -> Response:
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return _render(request, "login.html")
    service = request.app.state.service
    try:
        page = await run_in_threadpool(service.next_record, who)
    except GlassboxError as exc:
        return _render(request, "login.html", exc.status_code, error=exc.message)
    return _review_form(request, who, page["record"], page["remaining"])


def _review_form(request: Request, who: Principal, record: dict | None, remaining: int | None) -> Response:
    return _render(
        request,
        "review.html",
        user=who,
        record=record,
        remaining=remaining,
        classes=list(record["probabilities"]) if record else [],
        message=request.session.pop("message", ""),
    )


async def one_record(request: Request) -> Response:
    """One record in the review form, opened from the list view or the lead's view."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return _render(request, "login.html")
    service = request.app.state.service
    try:
        record = await run_in_threadpool(service.get_record, who, request.path_params["record_id"])
    except GlassboxError as exc:
        return _render(request, "problem.html", exc.status_code, user=who, error=exc.message)
    return _review_form(request, who, record, None)


async def record_list(request: Request) -> Response:
    """Every record, filtered and sorted by the query string (``record_query``'s parameters)."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return _render(request, "login.html")
    service = request.app.state.service
    error, query, page = "", RecordQuery(), {"records": [], "total": 0}
    try:
        query = parse_record_query(dict(request.query_params))
    except GlassboxError as exc:
        error = exc.message
    try:
        facets = await run_in_threadpool(service.facets, who)
        if not error:
            page = await run_in_threadpool(service.list_records, who, query)
    except GlassboxError as exc:
        return _render(request, "problem.html", exc.status_code, user=who, error=exc.message)
    for name in ("source", "model_version", "predicted_label"):  # a chosen value stays on offer
        chosen = getattr(query, name)
        if chosen is not None and chosen not in facets[name]:
            facets = {**facets, name: [*facets[name], chosen]}
    end = query.offset + len(page["records"])
    return _render(
        request,
        "records.html",
        400 if error else 200,
        user=who,
        error=error,
        query=query,
        page=page,
        facets=facets,
        statuses=STATUSES,
        sorts=list(SORTS),
        previous=query.query_string(offset=max(query.offset - query.limit, 0)) if query.offset else None,
        next=query.query_string(offset=end) if end < page["total"] and end <= MAX_OFFSET else None,
        first=query.offset + 1 if page["records"] else 0,
        last=end,
        max_offset=MAX_OFFSET,
    )


async def lead(request: Request) -> Response:
    """The lead's view: progress, agreement, disagreements, answers per annotator (admin, owner)."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return _render(request, "login.html")
    try:
        overview = await run_in_threadpool(request.app.state.service.overview, who)
    except GlassboxError as exc:
        return _render(request, "problem.html", exc.status_code, user=who, error=exc.message)
    return _render(request, "lead.html", user=who, overview=overview)


async def login(request: Request) -> Response:
    key = (await _form(request)).get("api_key", "").strip()
    service = request.app.state.service
    try:
        who = await run_in_threadpool(service.authenticate, key)
        who.require("annotator")
    except GlassboxError as exc:
        return _render(request, "login.html", exc.status_code, error=exc.message)
    request.session["key_hash"] = hash_key(key)
    return RedirectResponse("/review", status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/review", status_code=303)


async def answer(request: Request) -> Response:
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return RedirectResponse("/review", status_code=303)
    form = await _form(request)
    body: dict[str, Any] = {"note": form.get("note", "")}
    if form.get("discard"):
        body["discard"] = True
    else:
        body["label"] = form.get("label")
    record_id = request.path_params["record_id"]
    try:
        outcome = await run_in_threadpool(request.app.state.service.respond, who, record_id, body)
    except GlassboxError as exc:
        request.session["message"] = f"Not saved: {exc.message}"
    else:
        what = "discarded" if body.get("discard") else f"labelled {body['label']}"
        request.session["message"] = f"Saved: {record_id} {what} ({outcome['status']})."
    return RedirectResponse("/review", status_code=303)


def review_routes() -> list[Route]:
    return [
        Route("/review", review),
        Route("/review/login", login, methods=["POST"]),
        Route("/review/logout", logout, methods=["POST"]),
        Route("/review/records", record_list),
        Route("/review/lead", lead),
        Route("/review/records/{record_id:path}", one_record),
        Route("/review/records/{record_id:path}", answer, methods=["POST"]),
    ]
