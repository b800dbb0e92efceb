"""The deny list every service keeps of revoked tokens, in its own database.

    deny_list = DenyList(Base.metadata)                 # models.py: its two tables
    init_jwt(app, settings, database, is_revoked=deny_list.is_revoked)
    handlers = {**deny_list.handlers, ...}              # token.revoked, user.tokens_invalidated

Two kinds of entry: a token's ``jti`` (a logout; kept until the token would have expired
anyway), and a user's minimum token version (a password change: every token with an
older ``ver`` is refused). The user service writes both as it publishes the events; the
other services learn them from those events and never read the user database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.database import UTCDateTime, utcnow
from app.kit.events import Handler, Handling


class DenyList:
    def __init__(self, metadata: MetaData):
        self.denied = Table(
            "denied_tokens",
            metadata,
            Column("jti", String(64), primary_key=True),
            Column("expires_at", UTCDateTime, nullable=False, index=True),
        )
        self.versions = Table(
            "token_versions",
            metadata,
            Column("user_id", BigInteger, primary_key=True),
            Column("version", Integer, nullable=False),
        )
        self.handlers: Mapping[str, Handler] = {
            "token.revoked": self.on_token_revoked,
            "user.tokens_invalidated": self.on_tokens_invalidated,
        }

    def deny(self, session: Session, jti: str, expires_at: datetime) -> bool:
        """Refuse the token ``jti`` until ``expires_at``; False if it was refused already."""
        session.execute(delete(self.denied).where(self.denied.c.expires_at < utcnow()))
        if self.is_denied(session, jti):
            return False
        try:
            with session.begin_nested():
                session.execute(self.denied.insert().values(jti=jti, expires_at=expires_at))
        except IntegrityError:  # a concurrent revocation of the same token came first
            return False
        return True

    def raise_version(self, session: Session, user_id: int, version: int) -> None:
        """Refuse the user's tokens older than ``version``; an older version never lowers it."""
        raised = session.execute(
            update(self.versions)
            .where(self.versions.c.user_id == user_id)
            .where(self.versions.c.version < version)
            .values(version=version)
        )
        if raised.rowcount == 0:
            try:
                with session.begin_nested():
                    session.execute(self.versions.insert().values(user_id=user_id, version=version))
            except IntegrityError:  # a row exists already, at this version or newer
                pass

    def is_denied(self, session: Session, jti: str) -> bool:
        return session.scalar(select(self.denied.c.jti).where(self.denied.c.jti == jti)) is not None

    def is_revoked(self, session: Session, claims: Mapping[str, Any]) -> bool:
        """The token was logged out, or predates a new password."""
        if self.is_denied(session, claims["jti"]):
            return True
        minimum = session.scalar(
            select(self.versions.c.version).where(self.versions.c.user_id == int(claims["sub"]))
        )
        return minimum is not None and claims.get("ver", 0) < minimum

    def on_token_revoked(self, payload: dict[str, Any], handling: Handling) -> None:
        with handling() as session:
            self.deny(session, payload["jti"], datetime.fromtimestamp(payload["expires_at"], UTC))

    def on_tokens_invalidated(self, payload: dict[str, Any], handling: Handling) -> None:
        with handling() as session:
            self.raise_version(session, int(payload["user_id"]), int(payload["version"]))
