"""The deny list every service keeps of revoked tokens: in its own database, and in memory.

    deny_list = DenyList(Base.metadata)                 # models.py: its two tables
    parts = init_service(app, settings, ..., deny_list=deny_list)
    init_jwt(app, settings, is_revoked=parts.revocations.is_revoked)    # from memory
    handlers = {**deny_list.handlers, ...}              # TokenRevoked, UserTokensInvalidated

Two kinds of entry: a token's ``jti`` (a logout; kept until the token would have expired
anyway), and a user's minimum token version (a password change: every token with an
older ``ver`` is refused). The user service writes both as it publishes the events; the
other services learn them from those events and never read the user database.

A request's check reads ``Revocations``, the entries in memory: no database round
trip, no lock. Each process loads them all on first use, so a process started later
knows every revocation made before it; applies its own as soon as their unit of work
commits; and learns those of the other processes sharing the database from
``refresh()``, which the runtime calls every ``REFRESH_SECONDS`` (each entry records
when it was made, and a refresh reads the ones made since shortly before the last).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.database import Database, UTCDateTime, utcnow
from app.kit.events import Handlers, Handling
from app.kit.topics import TokenRevoked, UserTokensInvalidated

REFRESH_SECONDS = 0.5
"""How often a process reads the entries other processes made: half the one second a
revocation may take to reach every process."""
OVERLAP = timedelta(seconds=10)
"""How far back before its last read a refresh looks again: longer than a unit of work
that made an entry takes to commit, and than the clocks of two hosts differ."""
_CHANGES = "microshop.deny_list.changes"
"""The deny list's own note, in ``session.info``, of what a unit of work added."""


class DenyList:
    def __init__(self, metadata: MetaData):
        self.denied = Table(
            "denied_tokens",
            metadata,
            Column("jti", String(64), primary_key=True),
            Column("expires_at", UTCDateTime, nullable=False, index=True),
            Column("denied_at", UTCDateTime, nullable=False, index=True),
        )
        self.versions = Table(
            "token_versions",
            metadata,
            Column("user_id", BigInteger, primary_key=True),
            Column("version", Integer, nullable=False),
            Column("changed_at", UTCDateTime, nullable=False, index=True),
        )
        self.handlers: Handlers = {
            TokenRevoked: self.on_token_revoked,
            UserTokensInvalidated: self.on_tokens_invalidated,
        }

    def deny(self, session: Session, jti: str, expires_at: datetime) -> bool:
        """Refuse the token ``jti`` until ``expires_at``; False if it was refused already."""
        now = utcnow()
        session.execute(delete(self.denied).where(self.denied.c.expires_at < now))
        if self.is_denied(session, jti):
            return False
        try:
            with session.begin_nested():
                session.execute(
                    self.denied.insert().values(jti=jti, expires_at=expires_at, denied_at=now)
                )
        except IntegrityError:  # a concurrent revocation of the same token came first
            return False
        _changes(session).append((jti, expires_at, None, None))
        return True

    def raise_version(self, session: Session, user_id: int, version: int) -> None:
        """Refuse the user's tokens older than ``version``; an older version never lowers it."""
        now = utcnow()
        raised = session.execute(
            update(self.versions)
            .where(self.versions.c.user_id == user_id)
            .where(self.versions.c.version < version)
            .values(version=version, changed_at=now)
        )
        if raised.rowcount == 0:
            try:
                with session.begin_nested():
                    session.execute(
                        self.versions.insert().values(
                            user_id=user_id, version=version, changed_at=now
                        )
                    )
            except IntegrityError:  # a row exists already, at this version or newer
                return
        _changes(session).append((None, None, user_id, version))

    def is_denied(self, session: Session, jti: str) -> bool:
        """Read from the database: for the user service, which checks its own rows."""
        return session.scalar(select(self.denied.c.jti).where(self.denied.c.jti == jti)) is not None

    def on_token_revoked(self, event: TokenRevoked, handling: Handling) -> None:
        with handling() as session:
            self.deny(session, event.jti, datetime.fromtimestamp(event.expires_at, UTC))

    def on_tokens_invalidated(self, event: UserTokensInvalidated, handling: Handling) -> None:
        with handling() as session:
            self.raise_version(session, event.user_id, event.version)

    def revocations(self, database: Database) -> Revocations:
        """The entries of ``database``, kept in memory for this process."""
        return Revocations(self, database)


Change = tuple[str | None, datetime | None, int | None, int | None]
"""(jti, expires_at) of a denied token, or (user_id, version) of a raised version."""


def _changes(session: Session) -> list[Change]:
    return session.info.setdefault(_CHANGES, [])


class Revocations:
    """One database's deny list in this process's memory: what every request checks."""

    def __init__(self, deny_list: DenyList, database: Database):
        self.deny_list = deny_list
        self.database = database
        self._denied: dict[str, datetime] = {}
        self._versions: dict[int, int] = {}
        self._read_until: datetime | None = None
        """When the last read started; None until the first (a full load) has run."""
        self._reading = threading.Lock()
        """One read of the database at a time."""
        self._changing = threading.Lock()
        """One change of the entries at a time (held for a dictionary copy, never for I/O)."""
        database.on_commit(self._committed)

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        """The token was logged out, or predates its user's newest password."""
        if self._read_until is None:
            self.refresh()
        expires_at = self._denied.get(claims["jti"])
        if expires_at is not None and expires_at > utcnow():
            return True
        minimum = self._versions.get(int(claims["sub"]))
        return minimum is not None and claims.get("ver", 0) < minimum

    def refresh(self) -> None:
        """Read what was added since shortly before the last read (everything, the first
        time), and forget tokens that have expired anyway."""
        with self._reading:
            started = utcnow()
            since = None if self._read_until is None else self._read_until - OVERLAP
            denied, versions = self.deny_list.denied, self.deny_list.versions
            tokens = select(denied.c.jti, denied.c.expires_at).where(denied.c.expires_at > started)
            raised = select(versions.c.user_id, versions.c.version)
            if since is not None:
                tokens = tokens.where(denied.c.denied_at >= since)
                raised = raised.where(versions.c.changed_at >= since)
            with self.database.unit_of_work(readonly=True) as session:
                found_tokens = session.execute(tokens).all()
                found_versions = session.execute(raised).all()
            self._apply(
                [(jti, expires_at, None, None) for jti, expires_at in found_tokens]
                + [(None, None, user_id, version) for user_id, version in found_versions],
                forget_expired_at=started,
            )
            self._read_until = started

    def learn(self, event: TokenRevoked | UserTokensInvalidated) -> None:
        """Count a revocation as soon as it is heard of (a process's own queue on the
        broker), before the next ``refresh`` would read it from the database."""
        if isinstance(event, TokenRevoked):
            self._apply([(event.jti, datetime.fromtimestamp(event.expires_at, UTC), None, None)])
        else:
            self._apply([(None, None, event.user_id, event.version)])

    def _committed(self, session: Session) -> None:
        """A unit of work of this process committed: its entries count from now on."""
        changes = session.info.get(_CHANGES)
        if changes:
            self._apply(changes)

    def _apply(self, changes: Iterable[Change], forget_expired_at: datetime | None = None) -> None:
        """New dictionaries, swapped in whole: a request reads the old or the new."""
        with self._changing:
            denied, versions = dict(self._denied), dict(self._versions)
            for jti, expires_at, user_id, version in changes:
                if jti is not None and expires_at is not None:
                    denied[jti] = expires_at
                elif user_id is not None and version is not None:
                    versions[user_id] = max(version, versions.get(user_id, version))
            if forget_expired_at is not None:
                denied = {jti: until for jti, until in denied.items() if until > forget_expired_at}
            self._denied, self._versions = denied, versions
