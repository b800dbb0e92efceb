"""What ``Client`` and ``AsyncClient`` share: building a request, the retry policy, the
tokens, and reading an answer. Everything here is free of I/O, so the two clients differ
only in how they send and wait."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from microshop_client.errors import UnexpectedResponse, Unreachable, error_for
from microshop_client.routes import Route

Model = TypeVar("Model", bound=BaseModel)
Amount = Decimal | float | int | str
"""Money as the API takes it: a number or a decimal string, at most 2 decimals."""

DEFAULT_URL = "http://127.0.0.1:8080"
IN_PROCESS_URL = "http://microshop.invalid"
"""The base URL of an in-process application: no request ever leaves the process."""
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0, pool=60.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=20)
"""One pool per client: at most 20 sockets, kept open between calls."""
RETRIES = 2
BACKOFF = 0.1
"""Seconds before the first retry; each next waits four times longer (0.1 s, 0.4 s)."""
RETRY_STATUSES = frozenset({502, 503, 504})
_SERVICE = re.compile(r"^[a-z][a-z0-9_]*$")
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Tokens:
    """What login gave: the access token for calls, the refresh token to renew it."""

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    """``time.monotonic()`` when the access token expires, when the server said."""

    def expiring(self) -> bool:
        """Renew before a call rather than after a 401: less than a quarter of its
        lifetime (at most 10 s) is left."""
        if self.expires_at is None or self.refresh_token is None:
            return False
        return time.monotonic() >= self.expires_at

    @classmethod
    def issued(cls, access: str, refresh: str | None, expires_in: int) -> Tokens:
        margin = min(10.0, expires_in / 4)
        return cls(access, refresh, time.monotonic() + expires_in - margin)


def base_url(url: str | None, prefix: str) -> str:
    """``prefix`` is where an embedding host mounted the shop (``/shop``), if anywhere."""
    root = (url or DEFAULT_URL).rstrip("/")
    return f"{root}/{prefix.strip('/')}" if prefix.strip("/") else root


def path_of(route: Route, **arguments: Any) -> str:
    """The route's path with its arguments; ``service=None`` means the process itself."""
    if "service" in arguments:
        service = arguments.pop("service")
        if service is None:
            return route.path.replace("/{service}", "", 1)
        if not _SERVICE.match(service):
            raise ValueError(f"{service!r} is not a service name")
        arguments["service"] = service
    return route.path.format(**arguments)


def build(
    http: httpx.Client | httpx.AsyncClient,
    route: Route,
    path: str,
    *,
    body: BaseModel | None = None,
    query: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> httpx.Request:
    """The request, without its Authorization header (added per attempt: it may be renewed)."""
    headers = {}
    if route.idempotency_key:
        headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
    params = {name: value for name, value in (query or {}).items() if value is not None}
    json = body.model_dump(mode="json", exclude_unset=True) if body is not None else None
    return http.build_request(
        route.method, path.lstrip("/"), json=json, params=params or None, headers=headers
    )


def authorize(request: httpx.Request, route: Route, tokens: Tokens | None) -> None:
    if route.auth == "none" or tokens is None:
        return
    token = tokens.access_token if route.auth == "access" else tokens.refresh_token
    if token:
        request.headers["Authorization"] = f"Bearer {token}"


def expired(response: httpx.Response, route: Route) -> bool:
    """The access token ran out: renewing it and asking again is the answer."""
    if response.status_code != 401 or route.auth != "access":
        return False
    return _slug(response) == "token_expired"


def retry_delay(
    route: Route,
    attempt: int,
    *,
    response: httpx.Response | None = None,
    error: Exception | None = None,
) -> float | None:
    """Seconds to wait before asking again, or None: the answer stands.

    A request that never left (no connection) is always asked again; one that may have
    reached the server only when asking twice is harmless (``Route.safe``)."""
    if attempt >= RETRIES or not route.retry:
        return None
    delay = BACKOFF * 4**attempt
    if error is not None:
        return delay if isinstance(error, _NEVER_SENT) or route.safe else None
    assert response is not None
    if not route.safe:
        return None
    if response.status_code in RETRY_STATUSES:
        return delay
    in_progress = response.status_code == 409 and _slug(response) == "request_in_progress"
    return delay if route.idempotency_key and in_progress else None


def unreachable(request: httpx.Request, error: Exception) -> Unreachable:
    return Unreachable(f"{request.method} {request.url}: {type(error).__name__}: {error}")


def read(response: httpx.Response, route: Route, model: type[Model] | None) -> Any:
    """The answer's data (as ``model`` when given), or the error it stands for, raised."""
    request_id = response.headers.get("X-Request-ID")
    is_json = response.headers.get("Content-Type", "").startswith("application/json")
    if response.is_success and not route.envelope:
        return response.json() if is_json else response.text
    envelope = response.json() if is_json else None
    if not isinstance(envelope, dict) or "code" not in envelope:
        raise UnexpectedResponse(response.status_code, response.text, request_id)
    if not response.is_success:
        raise error_for(
            response.status_code, envelope, request_id, response.headers.get("Retry-After")
        )
    data = envelope.get("data")
    return model.model_validate(data) if model is not None else data


def _slug(response: httpx.Response) -> str | None:
    try:
        return response.json()["data"]["error"]
    except (ValueError, KeyError, TypeError):
        return None


def given(**values: Any) -> dict[str, Any]:
    """The arguments the caller gave: the server applies its own defaults to the rest."""
    return {name: value for name, value in values.items() if value is not None}
