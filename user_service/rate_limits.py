"""The user service's rate limits, shared through Redis when ``MICROSHOP_REDIS_URL`` is set.

    init_rate_limits(app, settings, login_endpoint="login", password_endpoint="password")

- Login: ``MICROSHOP_LOGIN_RATE_LIMIT`` attempts per client address and username, every
  attempt counted (a right password too), so guessing and hashing floods are bounded.
- Password change: ``MICROSHOP_PASSWORD_RATE_LIMIT`` wrong current passwords per user
  (the user of the access token): what guessing needs, whichever address it comes
  from. A request without a valid access token is not counted; the view refuses it 401.

A breach is 429 ``rate_limited`` with ``Retry-After``. Each limit was checked when the
settings were made, so neither can be switched off by a value flask-limiter cannot parse.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from app.kit.auth import verify_token
from app.kit.errors import Unauthorized
from app.kit.responses import error_response
from app.settings import Settings

_BREACHED = {
    "login": "too many login attempts, try again later",
    "password": "too many wrong passwords, try again later",
}


def _client_and_username() -> str:
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # absurdly nested JSON: the view answers invalid_json
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    name = username.lower() if isinstance(username, str) else ""
    return f"{request.remote_addr}|{name}"


def _token_user() -> str | None:
    """The user id of the request's access token, verified as the view verifies it."""
    try:
        return str(verify_token()["sub"])
    except Unauthorized:
        return None


def _user() -> str:
    return f"user|{_token_user()}"


def _no_valid_token() -> bool:
    return _token_user() is None


def _wrong_password(response: Response) -> bool:
    return response.status_code == 401


def init_rate_limits(
    app: Flask, settings: Settings, *, login_endpoint: str, password_endpoint: str
) -> Limiter:
    """Rate-limit the views at these endpoints: logins, and password changes.

    flask-limiter's own headers are off: it would put ``Retry-After`` on every answer."""
    limiter = Limiter(
        key_func=_client_and_username,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        headers_enabled=False,
        key_prefix="microshop-user",
    )
    breached = {login_endpoint: _BREACHED["login"], password_endpoint: _BREACHED["password"]}
    app.view_functions[login_endpoint] = limiter.limit(settings.login_rate_limit)(
        app.view_functions[login_endpoint]
    )
    app.view_functions[password_endpoint] = limiter.limit(
        settings.password_rate_limit,
        key_func=_user,
        exempt_when=_no_valid_token,
        deduct_when=_wrong_password,
    )(app.view_functions[password_endpoint])

    @app.errorhandler(RateLimitExceeded)
    def too_many_attempts(_error: RateLimitExceeded) -> Response:
        message = breached.get(request.endpoint or "", "too many requests, try again later")
        response = error_response(429, "rate_limited", message)
        reset_time, _remaining = limiter.current_limit.window  # reset_at adds a second
        wait = math.ceil(reset_time - time.time())
        response.headers["Retry-After"] = str(max(1, wait))
        return response

    return limiter
