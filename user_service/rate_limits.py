"""The login rate limit: per client address and username, shared through Redis when set."""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter

from app.settings import Settings


def _client_and_username() -> str:
    body = request.get_json(force=True, silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    name = username.lower() if isinstance(username, str) else ""
    return f"{request.remote_addr}|{name}"


def limit_logins(app: Flask, settings: Settings, endpoint: str) -> Limiter:
    """Rate-limit the view at ``endpoint``; a breach is 429 ``rate_limited`` with Retry-After."""
    limiter = Limiter(
        key_func=_client_and_username,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        headers_enabled=True,
        key_prefix="microshop-login",
    )
    app.view_functions[endpoint] = limiter.limit(settings.login_rate_limit)(
        app.view_functions[endpoint]
    )
    return limiter
