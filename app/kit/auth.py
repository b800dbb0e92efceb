"""JWT set-up shared by every service: HS256 with the one secret, string ``sub``, a ``role``.

    init_jwt(app, settings, is_revoked=parts.revocations.is_revoked)
    class OrderList(Resource):
        method_decorators = [access_required]
        def get(self):
            caller = current_caller()           # Caller(id=7, role="user")

The scheme is case-insensitive and may be followed by several spaces (RFC 7235):
``bearer <token>`` is taken as ``Bearer <token>``.

Every token failure answers 401 with its own slug (``missing_token``, ``invalid_token``,
``token_expired``, ``token_revoked``), never flask-jwt-extended's default 422.
``is_revoked(claims)`` is the service's deny-list check (``app.kit.deny_list``, in
memory), called for every token whose claims are of the shape microshop issues (numeric
string ``sub``, ``jti``, ``role``).

Internal routes (``/<service>/internal/...``) take service tokens instead:

    token = issue_service_token(settings.jwt_secret, caller="payment")
    class InternalOrder(Resource):
        method_decorators = [service_required]
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import jwt as pyjwt
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    jwt_required,
)
from jwt import InvalidTokenError

from app.kit.errors import Unauthorized
from app.kit.responses import error_response
from app.settings import Settings

ROLES = ("user", "admin")
SERVICE_AUDIENCE = "microshop-internal"
SERVICE_TOKEN_TTL = 60
View = TypeVar("View", bound=Callable[..., Any])
BEARER = "Bearer"
_BEARER_SCHEME = re.compile(r"(^|,)(\s*)bearer(?=\s)", re.IGNORECASE)
"""The scheme of each credential in an ``Authorization`` value, in any case."""

access_required = jwt_required()
"""Decorator: a valid, unrevoked access token in ``Authorization: Bearer``."""

refresh_required = jwt_required(refresh=True)
"""Decorator: a valid, unrevoked refresh token in ``Authorization: Bearer``."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the access token says."""

    id: int
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_caller() -> Caller:
    claims = get_jwt()
    return Caller(id=int(claims["sub"]), role=claims.get("role", "user"))


def issue_access_token(user_id: int, role: str, claims: dict[str, Any] | None = None) -> str:
    return create_access_token(str(user_id), additional_claims={"role": role, **(claims or {})})


def access_token_lifetime() -> int:
    """Seconds an access token issued now stays valid (``expires_in``)."""
    return int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


def issue_refresh_token(user_id: int, role: str, claims: dict[str, Any] | None = None) -> str:
    return create_refresh_token(str(user_id), additional_claims={"role": role, **(claims or {})})


def _unauthorized(slug: str, message: str) -> Callable[..., Response]:
    def answer(*_args: Any) -> Response:
        return error_response(401, slug, message)

    return answer


def _check_claims(claims: dict[str, Any]) -> None:
    """Refuse a well-signed token whose claims microshop never issues (401 invalid_token)."""
    sub, jti = claims.get("sub"), claims.get("jti")
    if not (isinstance(sub, str) and sub.isdecimal() and sub.isascii()):
        raise InvalidTokenError("sub must be a user id")
    if not (isinstance(jti, str) and jti) or claims.get("role") not in ROLES:
        raise InvalidTokenError("token lacks jti or role")


def issue_service_token(secret: str, caller: str) -> str:
    """A token for one call between services: a minute long, for internal routes only.

    Its audience and ``type`` make every user route refuse it, and internal routes refuse
    user tokens, which carry no audience."""
    now = int(time.time())
    claims = {
        "sub": caller,
        "aud": SERVICE_AUDIENCE,
        "type": "service",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + SERVICE_TOKEN_TTL,
    }
    return pyjwt.encode(claims, secret, algorithm="HS256")


def _canonical_bearer_scheme() -> None:
    """Spell the scheme ``Bearer`` in this request's ``Authorization`` header.

    RFC 7235 makes the scheme case-insensitive; flask-jwt-extended (4.7) compares each
    credential's first word with ``JWT_HEADER_TYPE`` exactly, and has no hook to do
    otherwise, so ``bearer <token>`` would be a missing token."""
    header = request.environ.get("HTTP_AUTHORIZATION")
    if header:
        request.environ["HTTP_AUTHORIZATION"] = _BEARER_SCHEME.sub(rf"\1\2{BEARER}", header)


def _bearer_token() -> str | None:
    """The token of ``Authorization: Bearer <token>`` (any case, any spaces); else None."""
    words = request.headers.get("Authorization", "").split()
    if len(words) == 2 and words[0].lower() == BEARER.lower():
        return words[1]
    return None


def _service_claims() -> dict[str, Any]:
    token = _bearer_token()
    if token is None:
        raise Unauthorized("missing_token", "missing service token")
    try:
        claims = pyjwt.decode(
            token,
            current_app.config["JWT_SECRET_KEY"],
            algorithms=["HS256"],
            audience=SERVICE_AUDIENCE,
            options={"require": ["exp", "iat", "aud", "sub"]},
        )
    except pyjwt.ExpiredSignatureError:
        raise Unauthorized("token_expired", "service token has expired") from None
    except pyjwt.PyJWTError:
        raise Unauthorized("invalid_token", "invalid service token") from None
    if claims.get("type") != "service":
        raise Unauthorized("invalid_token", "invalid service token")
    return claims


def service_required(view: View) -> View:
    """Decorator for internal routes: a valid service token; ``g.calling_service`` names it."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        g.calling_service = _service_claims()["sub"]
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def init_jwt(
    app: Flask,
    settings: Settings,
    *,
    is_revoked: Callable[[Mapping[str, Any]], bool] | None = None,
) -> JWTManager:
    """JWT for ``app``; ``is_revoked`` is the service's deny list (None: it keeps none)."""
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_HEADER_TYPE=BEARER,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.access_token_ttl),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=settings.refresh_token_ttl),
        JWT_COOKIE_CSRF_PROTECT=False,
    )
    app.before_request(_canonical_bearer_scheme)
    jwt = JWTManager(app)
    jwt.unauthorized_loader(_unauthorized("missing_token", "missing bearer token"))
    jwt.invalid_token_loader(_unauthorized("invalid_token", "invalid token"))
    jwt.expired_token_loader(_unauthorized("token_expired", "token has expired"))
    jwt.revoked_token_loader(_unauthorized("token_revoked", "token has been revoked"))
    jwt.needs_fresh_token_loader(_unauthorized("invalid_token", "fresh token required"))
    jwt.user_lookup_error_loader(_unauthorized("invalid_token", "invalid token"))

    @jwt.token_in_blocklist_loader
    def revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        _check_claims(claims)  # flask-jwt-extended asks this before any other claim check
        return is_revoked is not None and is_revoked(claims)

    return jwt
