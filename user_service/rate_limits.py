"""The login rate limit: per client address and username, shared through Redis when set."""

from __future__ import annotations

import math
import time

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from app.kit.responses import error_response
from app.settings import Settings


def _client_and_username() -> str:
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # absurdly nested JSON: the view answers invalid_json
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    name = username.lower() if isinstance(username, str) else ""
    return f"{request.remote_addr}|{name}"


def limit_logins(app: Flask, settings: Settings, endpoint: str) -> Limiter:
    """Rate-limit the view at ``endpoint``: a breach is 429 ``rate_limited`` with Retry-After.

    flask-limiter's own headers are off: it would put ``Retry-After`` on every answer."""
    limiter = Limiter(
        key_func=_client_and_username,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        headers_enabled=False,
        key_prefix="microshop-login",
    )
    app.view_functions[endpoint] = limiter.limit(settings.login_rate_limit)(
        app.view_functions[endpoint]
    )

    @app.errorhandler(RateLimitExceeded)
    def too_many_attempts(_error: RateLimitExceeded) -> Response:
        response = error_response(429, "rate_limited", "too many login attempts, try again later")
        reset_time, _remaining = limiter.current_limit.window  # reset_at adds a second
        wait = math.ceil(reset_time - time.time())
        response.headers["Retry-After"] = str(max(1, wait))
        return response

    return limiter
