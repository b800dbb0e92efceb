"""The user service's HTTP resources: parse, apply the rule, answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response
from jwt import PyJWTError

from app.kit.api import Resource
from app.kit.auth import (
    access_required,
    access_token_lifetime,
    current_caller,
    current_claims,
    decode_token,
    issue_access_token,
    issue_refresh_token,
    refresh_required,
)
from app.kit.errors import ValidationFailed
from app.kit.openapi import operation
from app.kit.responses import created, ok
from app.kit.service import unit_of_work
from app.kit.validation import parse
from user_service import service
from user_service.errors import EmailTaken, InvalidCredentials, UsernameTaken
from user_service.models import User
from user_service.schemas import (
    AccessToken,
    Credentials,
    Logout,
    PasswordChange,
    Registration,
    TokenPair,
    UserOut,
)


def token_is_revoked(claims: Mapping[str, Any]) -> bool:
    """``init_jwt``'s check: the user service reads its own rows (``service.is_revoked``),
    the source of truth the other services' deny lists are fed from."""
    with unit_of_work(readonly=True) as session:
        return service.is_revoked(session, claims)


def _access_token(user: User) -> AccessToken:
    token = issue_access_token(user.id, user.role, {"ver": user.token_version})
    return AccessToken(token=token, access_token=token, expires_in=access_token_lifetime())


class Registrations(Resource):
    @operation(
        body=Registration,
        responses={201: UserOut},
        errors=(UsernameTaken, EmailTaken),
        auth=False,
        creates="user_id",
    )
    def post(self) -> Response:
        """Create an account."""
        form = parse(Registration)
        with unit_of_work() as session:
            user = service.register(session, form)
        return created(UserOut.of(user), "registered")


class Logins(Resource):
    @operation(
        body=Credentials,
        responses={200: TokenPair},
        errors=(InvalidCredentials, 429),
        auth=False,
    )
    def post(self) -> Response:
        """Exchange a username and password for an access and a refresh token."""
        form = parse(Credentials)
        with unit_of_work(readonly=True) as session:  # the slow hash check locks nothing
            user = service.authenticate(session, form)
        if service.hash_is_outdated(user):
            with unit_of_work() as session:
                service.upgrade_password_hash(session, user.id, form.password)
        access = _access_token(user)
        refresh = issue_refresh_token(user.id, user.role, {"ver": user.token_version})
        return ok(TokenPair(**access.model_dump(), refresh_token=refresh), "logged in")


class Refreshes(Resource):
    method_decorators = [refresh_required]

    @operation(responses={200: AccessToken}, errors=(422,))
    def post(self) -> Response:
        """Exchange a refresh token for a new access token."""
        with unit_of_work(readonly=True) as session:
            user = service.get_user(session, current_caller().id)
            return ok(_access_token(user), "refreshed")


def _refresh_claims(token: str, user_id: int) -> dict[str, Any]:
    """The claims of one of this user's refresh tokens; expired ones may still be revoked."""
    try:
        claims = decode_token(token, allow_expired=True)
    except PyJWTError:
        claims = {}
    if claims.get("type") != "refresh" or claims.get("sub") != str(user_id):
        raise ValidationFailed({"refresh_token": "is not a refresh token of this user"})
    return claims


class Logouts(Resource):
    method_decorators = [access_required]

    @operation(body=Logout, body_required=False, responses={200: None})
    def post(self) -> Response:
        """Revoke this access token, and the refresh token if given, for good."""
        form = parse(Logout, optional=True)
        tokens = [current_claims()]
        if form.refresh_token is not None:
            tokens.append(_refresh_claims(form.refresh_token, current_caller().id))
        with unit_of_work() as session:
            service.revoke_tokens(session, tokens)
        return ok(msg="logged out")


class CurrentUser(Resource):
    method_decorators = [access_required]

    @operation(responses={200: UserOut}, errors=(422,))
    def get(self) -> Response:
        """The caller's own account."""
        with unit_of_work(readonly=True) as session:
            return ok(UserOut.of(service.get_user(session, current_caller().id)))


class UserItem(Resource):
    method_decorators = [access_required]

    @operation(responses={200: UserOut}, errors=(403, 404, 422))
    def get(self, user_id: int) -> Response:
        """An account, for that user or an admin."""
        with unit_of_work(readonly=True) as session:
            return ok(UserOut.of(service.view_user(session, current_caller(), user_id)))


class Passwords(Resource):
    method_decorators = [access_required]

    @operation(body=PasswordChange, responses={200: None}, errors=(InvalidCredentials, 429))
    def post(self) -> Response:
        """Change the caller's password; every earlier token stops working."""
        form = parse(PasswordChange)
        with unit_of_work() as session:
            service.change_password(session, current_caller(), form)
        return ok(msg="password changed; sign in again")
