"""The platform's error vocabulary, mapped to the JSON envelope in one place.

    raise NotFound("order")                 # 404 {"data": {"error": "not_found"}}
    register_error_handlers(app)            # every error path answers the envelope

A service declares its own slugs as subclasses, in its ``errors.py``:

    class UsernameTaken(Conflict):
        slug, message = "username_taken", "username already taken"

Handlers cover domain errors, werkzeug's HTTP errors (404, 405, 413, 429 …) and any
other exception (500, logged with the request id, no internals in the body). They work
the same with ``PROPAGATE_EXCEPTIONS`` off, as production runs.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException

from app.kit.responses import error_response

log = logging.getLogger("microshop.errors")


class ApiError(Exception):
    """A failure the client can act on: an HTTP status, a stable slug and a message."""

    status = 400
    slug = "bad_request"
    message = "bad request"

    def __init__(self, message: str | None = None, *, extra: dict[str, Any] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.extra = extra or {}


class InvalidJson(ApiError):
    status, slug, message = 400, "invalid_json", "request body must be a JSON object"


class Unauthorized(ApiError):
    status, slug, message = 401, "invalid_token", "invalid token"

    def __init__(self, slug: str, message: str):
        super().__init__(message)
        self.slug = slug


class Forbidden(ApiError):
    status, slug, message = 403, "forbidden", "not allowed"


class NotFound(ApiError):
    status, slug = 404, "not_found"

    def __init__(self, what: str = "resource"):
        super().__init__(f"{what} not found")


class Conflict(ApiError):
    """The resource's state refuses the request; a service names each case (a subclass)."""

    status, slug, message = 409, "conflict", "conflict with the current state"


class ValidationFailed(ApiError):
    """422 naming every offending field: ``{"fields": {"price": "must be greater than 0"}}``."""

    status, slug, message = 422, "validation_error", "invalid input"

    def __init__(self, fields: dict[str, str], message: str | None = None):
        super().__init__(message, extra={"fields": fields})
        self.fields = fields


class ServiceUnavailable(ApiError):
    status, slug, message = 503, "service_unavailable", "service unavailable"


# Slugs for errors raised by werkzeug and the extensions rather than by our code.
HTTP_SLUGS = {
    400: "bad_request",
    401: "missing_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}
HTTP_MESSAGES = {
    404: "no such resource",
    405: "method not allowed",
    413: "request body is larger than the limit",
    429: "too many requests, try again later",
}


def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.slug, error.message, **error.extra)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status >= 500:
        return _unexpected_error(error)
    slug = HTTP_SLUGS.get(status, "bad_request")
    response = error_response(status, slug, HTTP_MESSAGES.get(status, error.name.lower()))
    for name, value in error.get_headers():
        if name.lower() != "content-type":  # e.g. Allow on 405, Retry-After on 429
            response.headers[name] = value
    return response


def _unexpected_error(error: Exception) -> Response:
    request_id = g.get("request_id", "-")
    log.error(  # a JSON line with its traceback (observability); the client sees none of it
        "unhandled error (request id %s)",
        request_id,
        exc_info=error,
        extra={"request_id": request_id},
    )
    return error_response(500, "internal_error", "internal server error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
