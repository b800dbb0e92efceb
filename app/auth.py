"""JWT set-up shared by every service: HS256 with the one secret, string ``sub``, a ``role``.

    init_jwt(app, settings, is_revoked=deny_list.is_revoked)
    class OrderList(Resource):
        method_decorators = [access_required]
        def get(self):
            caller = current_caller()           # Caller(id=7, role="user")

Every token failure answers 401 with its own slug (``missing_token``, ``invalid_token``,
``token_expired``, ``token_revoked``), never flask-jwt-extended's default 422.
``is_revoked(claims)`` is the service's deny-list check, called for every token whose
claims are of the shape microshop issues (numeric string ``sub``, ``jti``, ``role``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, Response
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    jwt_required,
)
from jwt import InvalidTokenError

from app.responses import error_response
from app.settings import Settings

ROLES = ("user", "admin")

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


def init_jwt(
    app: Flask, settings: Settings, *, is_revoked: Callable[[dict[str, Any]], bool]
) -> JWTManager:
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.access_token_ttl),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=settings.refresh_token_ttl),
        JWT_COOKIE_CSRF_PROTECT=False,
    )
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
        return is_revoked(claims)

    return jwt
