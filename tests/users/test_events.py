"""The user service's events: what a logout and a password change publish for the other
services' deny lists (it handles none itself)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import DATABASE_BACKENDS, PASSWORD, service_database

from app.kit.auth import Caller
from user_service import events, service
from user_service.models import Base, User, outbox
from user_service.schemas import PasswordChange, Registration

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)


@pytest.fixture
def session(backend: str, tmp_path: Path) -> Iterator[Session]:
    with (
        service_database(backend, tmp_path, "user", Base.metadata) as database,
        database.unit_of_work() as session,
    ):
        yield session


def a_user(session: Session) -> User:
    form = Registration(username="alice", email="alice@example.com", password=PASSWORD)
    user = service.register(session, form)
    session.flush()
    return user


def published(session: Session) -> list[tuple[str, dict[str, Any]]]:
    rows = session.execute(
        select(outbox.table.c.topic, outbox.table.c.payload).order_by(outbox.table.c.id)
    )
    return [(topic, json.loads(payload)) for topic, payload in rows]


def test_a_logout_publishes_token_revoked_once_per_token(session: Session):
    user = a_user(session)
    expires = int(time.time()) + 60
    access = {"sub": str(user.id), "jti": uuid.uuid4().hex, "exp": expires, "ver": 0}
    refresh = {"sub": str(user.id), "jti": uuid.uuid4().hex, "exp": expires + 60, "ver": 0}
    service.revoke_tokens(session, [access, refresh])
    service.revoke_tokens(session, [access])  # again: already denied, nothing new to say
    assert published(session) == [
        ("token.revoked", {"jti": access["jti"], "user_id": user.id, "expires_at": expires}),
        ("token.revoked", {"jti": refresh["jti"], "user_id": user.id, "expires_at": expires + 60}),
    ]


def test_a_password_change_publishes_the_new_token_version(session: Session):
    user = a_user(session)
    change = PasswordChange(old_password=PASSWORD, new_password="a-brand-new-passphrase")
    service.change_password(session, Caller(user.id, "user"), change)
    assert published(session) == [("user.tokens_invalidated", {"user_id": user.id, "version": 1})]


def test_the_user_service_handles_no_topic():
    assert events.handlers() == {}
