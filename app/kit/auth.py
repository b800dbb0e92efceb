"""JWT set-up shared by every service: HS256 with the one secret, string ``sub``, a ``role``.

    init_jwt(app, settings, is_revoked=parts.revocations.is_revoked)
    class OrderList(Resource):
        method_decorators = [access_required]
        def get(self):
            caller = current_caller()           # Caller(id=7, role="user")

The scheme is case-insensitive and may be followed by several spaces (RFC 7235):
``bearer <token>`` is taken as ``Bearer <token>``.

flask-jwt-extended issues the tokens; this module verifies them, once per request (the
claims are kept in ``g`` for the rest of the request), with one PyJWT decode the first time
a process sees a token, which it remembers for the token's next requests. Every token
failure answers 401 with its own slug (``missing_token``, ``invalid_token``,
``token_expired``, ``token_revoked``). ``is_revoked(claims)`` is the service's deny-list
check (``app.kit.deny_list``, in memory), called for every token whose claims are of the
shape microshop issues (numeric string ``sub``, ``jti``, ``role``).

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
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token

from app.kit.errors import Unauthorized
from app.settings import Settings

ROLES = ("user", "admin")
SERVICE_AUDIENCE = "microshop-internal"
SERVICE_TOKEN_TTL = 60
View = TypeVar("View", bound=Callable[..., Any])
_SCHEME = "bearer"
_CREDENTIALS = re.compile(r",\s*")
"""What separates the credentials listed in one ``Authorization`` value."""
_VERIFIED = "_microshop_verified_token"
"""``g``'s note of the token verified in this request: (is a refresh token, claims)."""
_REVOCATION_CHECK = "microshop.is_revoked"
SIGNATURES_REMEMBERED = 4096
"""Tokens a process remembers having checked the signature of (``_signed_claims``)."""


def access_required(view: View) -> View:
    """Decorator: a valid, unrevoked access token in ``Authorization: Bearer``."""
    return _token_required(view, refresh=False)


def refresh_required(view: View) -> View:
    """Decorator: a valid, unrevoked refresh token in ``Authorization: Bearer``."""
    return _token_required(view, refresh=True)


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the access token says."""

    id: int
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_caller() -> Caller:
    claims = current_claims()
    return Caller(id=int(claims["sub"]), role=claims.get("role", "user"))


def current_claims() -> dict[str, Any]:
    """The claims of this request's token, verified by ``access_required`` or
    ``refresh_required``; RuntimeError if none was."""
    claims = verified_claims()
    if claims is None:
        raise RuntimeError("no token was verified in this request")
    return claims


def verified_claims() -> dict[str, Any] | None:
    """The claims of this request's token if it was verified already, else None."""
    verified = g.get(_VERIFIED)
    return verified[1] if verified is not None else None


def issue_access_token(user_id: int, role: str, claims: dict[str, Any] | None = None) -> str:
    return create_access_token(str(user_id), additional_claims={"role": role, **(claims or {})})


def access_token_lifetime() -> int:
    """Seconds an access token issued now stays valid (``expires_in``)."""
    return int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


def issue_refresh_token(user_id: int, role: str, claims: dict[str, Any] | None = None) -> str:
    return create_refresh_token(str(user_id), additional_claims={"role": role, **(claims or {})})


def decode_token(token: str, *, allow_expired: bool = False) -> dict[str, Any]:
    """The claims of a token signed with this app's secret (PyJWTError if it is not)."""
    claims = _signed_claims(token, current_app.config["JWT_SECRET_KEY"])
    if not isinstance(claims["exp"], int | float):
        raise pyjwt.DecodeError("Expiration Time claim (exp) must be a number")
    if not allow_expired and claims["exp"] <= time.time():
        raise pyjwt.ExpiredSignatureError("Signature has expired")
    return dict(claims)  # the remembered claims stay as they were decoded


@functools.lru_cache(maxsize=SIGNATURES_REMEMBERED)
def _signed_claims(token: str, secret: str) -> dict[str, Any]:
    """The claims of a token whose signature ``secret`` made, its expiry not yet checked.

    Remembered, because a client sends the same token with every request until it
    expires, and PyJWT's decode is most of a token check (docs/performance.md). Only a
    token that passed is remembered, under its exact text and the secret, so a forged or
    altered token is always decoded, and refused; expiry and the deny list are checked
    on every use."""
    return pyjwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        options={"require": ["exp", "sub"], "verify_exp": False},
    )


def _check_claims(claims: dict[str, Any]) -> None:
    """Refuse a well-signed token whose claims microshop never issues (401 invalid_token)."""
    sub, jti = claims.get("sub"), claims.get("jti")
    if not (isinstance(sub, str) and sub.isdecimal() and sub.isascii()):
        raise Unauthorized("invalid_token", "invalid token")
    if not (isinstance(jti, str) and jti) or claims.get("role") not in ROLES:
        raise Unauthorized("invalid_token", "invalid token")


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


def _bearer_token() -> str:
    """The token of the one ``Bearer`` credential in ``Authorization``.

    The scheme is read in any case and may be followed by several spaces (RFC 7235); the
    header may list other credentials, comma-separated. No header, no ``Bearer``
    credential or two of them is a missing token; a credential of other than two words
    is an invalid one."""
    header = request.headers.get("Authorization", "").strip().strip(",")
    credentials = [
        words
        for words in (credential.split() for credential in _CREDENTIALS.split(header))
        if words and words[0].lower() == _SCHEME
    ]
    if len(credentials) != 1:
        raise Unauthorized("missing_token", "missing bearer token")
    if len(credentials[0]) != 2:
        raise Unauthorized("invalid_token", "invalid token")
    return credentials[0][1]


def _verify(refresh: bool) -> dict[str, Any]:
    """The request's access (or refresh) token, checked once: signature and expiry in one
    decode, then its type, the claims microshop issues, and the deny list."""
    token = _bearer_token()
    try:
        claims = decode_token(token)
    except pyjwt.ExpiredSignatureError:
        raise Unauthorized("token_expired", "token has expired") from None
    except pyjwt.PyJWTError:
        raise Unauthorized("invalid_token", "invalid token") from None
    if (claims.get("type", "access") == "refresh") is not refresh:
        raise Unauthorized("invalid_token", "invalid token")
    _check_claims(claims)
    is_revoked = current_app.extensions[_REVOCATION_CHECK]
    if is_revoked is not None and is_revoked(claims):
        raise Unauthorized("token_revoked", "token has been revoked")
    return claims


def verify_token(*, refresh: bool = False) -> dict[str, Any]:
    """The claims of this request's token, verified on first use and kept for the request,
    so a rate limit's key and the view share one check."""
    verified = g.get(_VERIFIED)
    if verified is None or verified[0] is not refresh:
        verified = (refresh, _verify(refresh))
        setattr(g, _VERIFIED, verified)
    return verified[1]


def _token_required(view: View, *, refresh: bool) -> View:
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        verify_token(refresh=refresh)
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def _service_claims() -> dict[str, Any]:
    try:
        token = _bearer_token()
    except Unauthorized:
        raise Unauthorized("missing_token", "missing service token") from None
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
    """JWT for ``app``; ``is_revoked`` is the service's deny list (None: it keeps none).

    flask-jwt-extended issues the tokens; this module verifies them, because its own
    check decodes every token three times before verifying it (docs/performance.md)."""
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret,
        JWT_ALGORITHM="HS256",
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.access_token_ttl),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=settings.refresh_token_ttl),
    )
    app.extensions[_REVOCATION_CHECK] = is_revoked
    return JWTManager(app)
