"""Errors that carry their HTTP status, so every transport answers a bad input with a 4xx.

Modelled on MLServer's ``errors.py``: raise the specific error where the problem is found and let
the transport (the Seldon wrapper, the queue's ASGI app, the gateway) turn ``status_code`` and the
message into its own response.
"""

from __future__ import annotations


class GlassboxError(Exception):
    """Base class; ``status_code`` is the HTTP status a transport should answer with."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class InvalidInput(GlassboxError):
    """The request is malformed or does not match the model's schema."""

    status_code = 400


class Unauthorized(GlassboxError):
    status_code = 401


class Forbidden(GlassboxError):
    status_code = 403


class NotFound(GlassboxError):
    status_code = 404


class Conflict(GlassboxError):
    status_code = 409


class Overloaded(GlassboxError):
    """Too much work in flight: refuse now rather than queue forever."""

    status_code = 503


class UpstreamUnavailable(GlassboxError):
    """A service this one depends on (the model, the queue) cannot be reached."""

    status_code = 503


class ConfigError(GlassboxError):
    """A training config or a setting is wrong; raised before any work starts."""

    status_code = 400


class ArtifactIntegrityError(GlassboxError):
    """An artifact's SHA-256 does not match its manifest: refuse to unpickle it."""

    status_code = 500
