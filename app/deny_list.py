"""A service's own small deny list, fed by the user service's events.

    add_deny_list_tables(Base.metadata)                 # models.py
    init_jwt(app, settings, is_revoked=deny_list_check(platform.database))
    init_events(app, platform, DENY_LIST_HANDLERS)      # token.revoked, user.tokens_invalidated

``token.revoked`` carries one token's ``jti`` (logout); ``user.tokens_invalidated``
carries the user's new token version (password change): every token with an older
``ver`` is refused. Services never read the user database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.database import Database, UTCDateTime, utcnow


def add_deny_list_tables(metadata: MetaData) -> None:
    Table(
        "denied_tokens",
        metadata,
        Column("jti", String(64), primary_key=True),
        Column("expires_at", UTCDateTime, nullable=False, index=True),
    )
    Table(
        "token_versions",
        metadata,
        Column("user_id", BigInteger, primary_key=True),
        Column("version", Integer, nullable=False),
    )


def _tables(session: Session) -> tuple[Table, Table]:
    tables = session.info["metadata"].tables
    return tables["denied_tokens"], tables["token_versions"]


def on_token_revoked(session: Session, payload: dict[str, Any]) -> None:
    denied, _versions = _tables(session)
    session.execute(delete(denied).where(denied.c.expires_at < utcnow()))
    if session.scalar(select(denied.c.jti).where(denied.c.jti == payload["jti"])) is None:
        expires_at = datetime.fromtimestamp(payload["expires_at"], UTC)
        session.execute(denied.insert().values(jti=payload["jti"], expires_at=expires_at))


def on_tokens_invalidated(session: Session, payload: dict[str, Any]) -> None:
    """Raise the user's minimum token version; a late, older event never lowers it."""
    _denied, versions = _tables(session)
    user_id, version = int(payload["user_id"]), int(payload["version"])
    raised = session.execute(
        update(versions)
        .where(versions.c.user_id == user_id)
        .where(versions.c.version < version)
        .values(version=version)
    )
    if raised.rowcount == 0:
        try:
            with session.begin_nested():
                session.execute(versions.insert().values(user_id=user_id, version=version))
        except IntegrityError:  # a row exists already, at this version or newer
            pass


DENY_LIST_HANDLERS = {
    "token.revoked": on_token_revoked,
    "user.tokens_invalidated": on_tokens_invalidated,
}


def deny_list_check(database: Database) -> Callable[[dict[str, Any]], bool]:
    """``is_revoked`` for ``init_jwt``: the token was logged out or predates a new password."""
    denied = database.metadata.tables["denied_tokens"]
    versions = database.metadata.tables["token_versions"]

    def is_revoked(claims: dict[str, Any]) -> bool:
        with database.unit_of_work() as session:
            if session.scalar(select(denied.c.jti).where(denied.c.jti == claims["jti"])):
                return True
            minimum = session.scalar(
                select(versions.c.version).where(versions.c.user_id == int(claims["sub"]))
            )
        return minimum is not None and claims.get("ver", 0) < minimum

    return is_revoked
