"""The review page: server-rendered HTML (Jinja2), no front-end build.

An annotator signs in with their API key (the signed session cookie keeps their name and session
generation, not the key; see ``_signed_in``), sees the least certain pending record they have not
answered, and labels it with a button or the keys 1…k.
The list view (``/review/records``) filters and sorts every record through the same parser and
store query as ``GET /api/v1/records`` and opens one in the same review form; the lead's view
(``/review/lead``, admin and owner) shows ``QueueService.overview``; the account page
(``/review/account``) rotates the user's key, signs them out everywhere and, for owners, changes
roles and deactivates users.
Forms are plain ``application/x-www-form-urlencoded`` posts, parsed with the standard library so
no multipart dependency is needed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from glassbox.annotation.auth import ROLES, Principal
from glassbox.annotation.explanation_view import ExplanationView, explanation_view
from glassbox.annotation.record_query import MAX_OFFSET, RecordQuery, parse_record_query
from glassbox.annotation.store.base import SORTS
from glassbox.contract.records import STATUSES
from glassbox.errors import GlassboxError, InvalidInput

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(seconds: float | None) -> str:
    """An epoch time as UTC text for the pages (``—`` for none)."""
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _when


async def _form(request: Request) -> dict[str, str]:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def _signed_in(request: Request) -> Principal | None:
    """The session's user, if still theirs: active, and no "sign out everywhere" since it began.

    The session names the user, the generation it began in and the user's creation time (a user
    deleted and made again under the same name does not inherit the old sessions). The role is read
    from the store on every request, so a role change applies at once.
    """
    name = request.session.get("user")
    user = request.app.state.service.store.user_by_name(name) if isinstance(name, str) else None
    if (
        user is None
        or not user["active"]
        or user["session_generation"] != request.session.get("generation")
        or user["created_at"] != request.session.get("since")
    ):
        return None
    return Principal(user["name"], user["role"])


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
        # Read from the stored explanation: the page never waits for the explainer.
        explained=explanation_view(record) if record else ExplanationView(state="none"),
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


async def lineage(request: Request) -> Response:
    """One prediction's lineage (``QueueService.lineage``), by record id or prediction id (puid)."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return _render(request, "login.html")
    wanted = request.path_params["record_id"]
    try:
        found = await run_in_threadpool(request.app.state.service.lineage, who, wanted)
    except GlassboxError as exc:
        return _render(request, "problem.html", exc.status_code, user=who, error=exc.message)
    return _render(request, "lineage.html", user=who, lineage=found)


async def retry_explanation(request: Request) -> Response:
    """The "Retry now" button of a failed explanation: owed again now, computed in the background."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return RedirectResponse("/review", status_code=303)
    record_id = request.path_params["record_id"]
    try:
        await run_in_threadpool(request.app.state.service.request_explanation, who, record_id)
    except GlassboxError as exc:
        request.session["message"] = f"Not retried: {exc.message}"
    else:
        request.session["message"] = f"The explanation of {record_id} is asked for again."
    return RedirectResponse(f"/review/records/{quote(record_id, safe='')}", status_code=303)


async def login(request: Request) -> Response:
    key = (await _form(request)).get("api_key", "").strip()
    service = request.app.state.service
    try:
        who = await run_in_threadpool(service.authenticate, key)
        who.require("annotator")
    except GlassboxError as exc:
        return _render(request, "login.html", exc.status_code, error=exc.message)
    user = await run_in_threadpool(service.store.user_by_name, who.name)
    request.session.clear()
    request.session.update(user=who.name, generation=user["session_generation"], since=user["created_at"])
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


async def account(request: Request) -> Response:
    """The caller's account (rotate the key, sign out everywhere) and, for owners, every user."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return _render(request, "login.html")
    return await _account_page(request, who)


async def _account_page(
    request: Request, who: Principal, new_key: str = "", status_code: int = 200
) -> Response:
    service = request.app.state.service
    users = await run_in_threadpool(service.list_users, who) if who.role == "owner" else []
    response = _render(
        request,
        "account.html",
        status_code,
        user=who,
        users=users,
        roles=ROLES,
        new_key=new_key,
        message=request.session.pop("message", ""),
    )
    response.headers["Cache-Control"] = "no-store"  # the page may show a new key: never cached
    return response


async def rotate_key(request: Request) -> Response:
    """A new key, shown in this answer only (not stored in the cookie, not cached)."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return RedirectResponse("/review", status_code=303)
    rotated = await run_in_threadpool(request.app.state.service.rotate_key, who)
    return await _account_page(request, who, new_key=rotated["api_key"])


async def sign_out_everywhere(request: Request) -> Response:
    who = await run_in_threadpool(_signed_in, request)
    if who is not None:
        await run_in_threadpool(request.app.state.service.sign_out_everywhere, who)
    request.session.clear()
    return RedirectResponse("/review", status_code=303)


async def manage_user(request: Request) -> Response:
    """An owner's form on the account page: ``action=role`` with ``role``, or ``action=deactivate``."""
    who = await run_in_threadpool(_signed_in, request)
    if who is None:
        return RedirectResponse("/review", status_code=303)
    form, name = await _form(request), request.path_params["name"]
    action = form.get("action")
    body: dict[str, Any] = {"role": form.get("role", "")} if action == "role" else {"active": False}
    try:
        if action not in ("role", "deactivate"):
            raise InvalidInput(f"unknown action {action!r}; use role or deactivate")
        user = await run_in_threadpool(request.app.state.service.update_user, who, name, body)
    except GlassboxError as exc:
        if exc.status_code == 403:
            return _render(request, "problem.html", 403, user=who, error=exc.message)
        request.session["message"] = f"Not changed: {exc.message}"
    else:
        done = f"is now {user['role']}" if action == "role" else "is deactivated"
        request.session["message"] = f"Saved: {name} {done}."
    return RedirectResponse("/review/account", status_code=303)


def review_routes() -> list[Route]:
    return [
        Route("/review/account", account),
        Route("/review/account/key", rotate_key, methods=["POST"]),
        Route("/review/account/sign-out-everywhere", sign_out_everywhere, methods=["POST"]),
        Route("/review/account/users/{name}", manage_user, methods=["POST"]),
        Route("/review", review),
        Route("/review/login", login, methods=["POST"]),
        Route("/review/logout", logout, methods=["POST"]),
        Route("/review/records", record_list),
        Route("/review/lead", lead),
        Route("/review/lineage/{record_id:path}", lineage),
        Route("/review/explain/{record_id:path}", retry_explanation, methods=["POST"]),
        Route("/review/records/{record_id:path}", one_record),
        Route("/review/records/{record_id:path}", answer, methods=["POST"]),
    ]
