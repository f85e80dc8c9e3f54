"""Flask error handlers for Seldon's REST app, so that no bad request ends as a 500.

Seldon 1.19 registers ``user_model.model_error_handler`` (a Blueprint) on its Flask app. Its own
catch-all turns every unexpected exception into 500, including problems that are the client's:
a malformed ``json=`` form field (``json.loads`` raises before any user code runs), a body sent
with a non-JSON content type (Flask raises 415), a feedback message protobuf cannot parse. These
handlers answer them with their real 4xx status and Seldon's usual error body.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Blueprint, jsonify, request
from google.protobuf.json_format import ParseError
from seldon_core.flask_utils import SeldonMicroserviceException, get_request
from seldon_core.utils import json_to_feedback, seldon_message_to_json
from werkzeug.exceptions import HTTPException

from glassbox.contract.seldon import seldon_error_body
from glassbox.errors import GlassboxError


class SeldonError(SeldonMicroserviceException):
    """Seldon's exception (REST answers ``status_code``) whose text is its message.

    Seldon's own has an empty ``str()``, and gRPC reports only ``str()``: a client would read
    "Exception calling application: " and nothing about what was wrong.
    """

    def __str__(self) -> str:
        return self.message


def error_blueprint(on_rejection: Callable[[str], None]) -> Blueprint:
    """Handlers that answer 4xx and report each refusal's reason to ``on_rejection`` (the metrics)."""
    blueprint = Blueprint("glassbox_errors", __name__)

    def answer(reason: str, message: str, code: int):
        if 400 <= code < 500:
            on_rejection(reason)
        response = jsonify(seldon_error_body(message, code))
        response.status_code = code
        return response

    @blueprint.before_app_request
    def body_must_be_an_object():
        """Seldon turns some bodies into protobuf before any component code runs, and a JSON scalar or
        list there is a ``TypeError`` (500). Refuse them first; what fails to parse at all is left to the
        view, whose error the handlers below answer."""
        if request.method != "POST" or (request.content_type or "").startswith("multipart/form-data"):
            return None
        try:
            body = get_request()
        except Exception:  # the view meets the same error, and the handlers below answer it
            return None
        if not isinstance(body, dict):
            kind = "null" if body is None else type(body).__name__
            return answer("bad_payload", f"the request body must be a JSON object, got {kind}", 400)
        if request.path.rstrip("/").endswith("feedback"):
            # Seldon's feedback view makes a protobuf of the body, and the component reads it back as JSON:
            # both steps fail on what protobuf cannot hold (Infinity, for one). Try them here first.
            try:
                seldon_message_to_json(json_to_feedback(body))
            except Exception as exc:
                message = f"the feedback does not fit Seldon's Feedback message: {exc}"
                return answer("bad_payload", message, 400)
        return None

    @blueprint.app_errorhandler(json.JSONDecodeError)
    def malformed_json(exc: json.JSONDecodeError):
        return answer(
            "malformed_json", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 400
        )

    @blueprint.app_errorhandler(ParseError)
    def unparseable_message(exc: ParseError):
        return answer("bad_payload", f"the message does not match Seldon's schema: {exc}", 400)

    @blueprint.app_errorhandler(RecursionError)
    def too_deep(exc: RecursionError):
        return answer("bad_payload", "the JSON document is nested too deeply", 400)

    @blueprint.app_errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return answer(f"http_{exc.code}", exc.description or exc.name, exc.code or 400)

    @blueprint.app_errorhandler(GlassboxError)
    def glassbox_error(exc: GlassboxError):
        return answer(getattr(exc, "reason", "invalid_input"), exc.message, exc.status_code)

    return blueprint
