"""The user service's rules: accounts, credentials, revocation. No Flask, no HTTP, no commit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.auth import Caller
from app.kit.errors import Forbidden, NotFound
from app.kit.topics import TokenRevoked, UserTokensInvalidated
from user_service import passwords
from user_service.errors import EmailTaken, InvalidCredentials, UsernameTaken
from user_service.models import User, deny_list, outbox
from user_service.schemas import Credentials, PasswordChange, Registration


def _key(text: str) -> str:
    return text.lower()


def _ensure_available(session: Session, username: str, email: str) -> None:
    if session.scalar(select(User.id).where(User.username_key == _key(username))) is not None:
        raise UsernameTaken()
    if session.scalar(select(User.id).where(User.email_key == _key(email))) is not None:
        raise EmailTaken()


def register(session: Session, form: Registration, *, role: str = "user") -> User:
    """Create an account; usernames and emails are unique regardless of case."""
    _ensure_available(session, form.username, form.email)
    user = User(
        username=form.username,
        username_key=_key(form.username),
        email=form.email,
        email_key=_key(form.email),
        password_hash=passwords.hash_password(form.password),
        role=role,
    )
    try:
        with session.begin_nested():  # a concurrent twin may have won since the check
            session.add(user)
    except IntegrityError:
        _ensure_available(session, form.username, form.email)
        raise
    return user


def authenticate(session: Session, form: Credentials) -> User:
    """The user these credentials prove, else ``invalid_credentials`` in about the same time.

    It only reads, so the slow hash check runs in a read-only unit of work and holds no
    write lock; an outdated hash is upgraded afterwards (``upgrade_password_hash``)."""
    user = session.scalar(select(User).where(User.username_key == _key(form.username)))
    if user is None:
        passwords.spend_verification_time(form.password)
        raise InvalidCredentials()
    if not passwords.verify_password(user.password_hash, form.password):
        raise InvalidCredentials()
    return user


def hash_is_outdated(user: User) -> bool:
    """Its hash was made with weaker parameters than today's."""
    return passwords.needs_rehash(user.password_hash)


def upgrade_password_hash(session: Session, user_id: int, password: str) -> None:
    """Rehash a password that a login has just proved, with today's parameters."""
    user = get_user(session, user_id)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user")
    return user


def view_user(session: Session, caller: Caller, user_id: int) -> User:
    """A user's account, for that user or an admin; others learn nothing, not even existence."""
    if user_id != caller.id and not caller.is_admin:
        raise Forbidden("you may only view your own account")
    return get_user(session, user_id)


def change_password(session: Session, caller: Caller, form: PasswordChange) -> User:
    """Set a new password and retire every token issued before it."""
    user = get_user(session, caller.id)
    if not passwords.verify_password(user.password_hash, form.old_password):
        raise InvalidCredentials("old password is wrong")
    user.password_hash = passwords.hash_password(form.new_password)
    user.token_version += 1
    outbox.publish(session, UserTokensInvalidated(user_id=user.id, version=user.token_version))
    return user


def revoke_tokens(session: Session, tokens: Iterable[Mapping[str, Any]]) -> None:
    """Put tokens (their claims) on the deny list for good, and tell the other services.

    Revoking twice is harmless."""
    for claims in tokens:
        if deny_list.deny(session, claims["jti"], datetime.fromtimestamp(claims["exp"], UTC)):
            revoked = TokenRevoked(
                jti=claims["jti"], user_id=int(claims["sub"]), expires_at=int(claims["exp"])
            )
            outbox.publish(session, revoked)


def is_revoked(session: Session, claims: Mapping[str, Any]) -> bool:
    """True when the token was logged out, predates a password change, or its user is gone."""
    user = session.get(User, int(claims["sub"]))
    if user is None or claims.get("ver") != user.token_version:
        return True
    return deny_list.is_denied(session, claims["jti"])
