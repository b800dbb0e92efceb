"""The user service's rules (service.py) on a real database, without Flask or HTTP."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import email_validator
import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from support import DATABASE_BACKENDS, PASSWORD, service_database

from app.kit.auth import Caller
from app.kit.database import Database
from app.kit.errors import Conflict, Forbidden, NotFound
from user_service import passwords, service
from user_service.errors import InvalidCredentials
from user_service.models import Base, User, deny_list
from user_service.schemas import RESERVED_DOMAINS, Credentials, PasswordChange, Registration

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[Database]:
    with service_database(backend, tmp_path, "user", Base.metadata) as database:
        yield database


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.unit_of_work() as session:
        yield session


def registration(username: str = "Alice", email: str = "Alice@Example.com") -> Registration:
    return Registration(username=username, email=email, password=PASSWORD)


def claims_of(user: User, **overrides) -> dict:
    claims = {
        "sub": str(user.id),
        "jti": uuid.uuid4().hex,
        "exp": int(time.time()) + 60,
        "ver": user.token_version,
    }
    return {**claims, **overrides}


def test_register_stores_an_argon2id_hash_and_case_folded_keys(session: Session):
    user = service.register(session, registration())
    session.flush()
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in user.password_hash
    assert (user.username, user.username_key) == ("Alice", "alice")
    assert user.email_key == "alice@example.com"
    assert user.role == "user"
    assert user.token_version == 0


@pytest.mark.parametrize(
    ("username", "email", "slug"),
    [("ALICE", "other@example.com", "username_taken"), ("bob", "alice@EXAMPLE.com", "email_taken")],
)
def test_register_refuses_taken_names_in_any_case(session: Session, username, email, slug):
    service.register(session, registration())
    with pytest.raises(Conflict) as raised:
        service.register(session, registration(username, email))
    assert raised.value.slug == slug


def test_the_unique_keys_hold_without_the_check(database: Database):
    """The database itself refuses a duplicate that slipped past the check (a race)."""
    with database.unit_of_work() as session:
        service.register(session, registration())
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        session.add(
            User(
                username="alice",
                username_key="alice",
                email="x@example.com",
                email_key="x@example.com",
                password_hash="x",
            )
        )


def test_authenticate_accepts_the_right_password(session: Session):
    user = service.register(session, registration())
    assert service.authenticate(session, Credentials(username="alice", password=PASSWORD)) is user


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_wrong_password_and_unknown_user_cost_one_verification_each(
    session: Session, monkeypatch: pytest.MonkeyPatch, username: str
):
    service.register(session, registration())
    calls = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda *a: calls.append(a) or real(*a))
    with pytest.raises(InvalidCredentials):
        service.authenticate(session, Credentials(username=username, password="wrong-password"))
    assert len(calls) == 1


def test_a_login_upgrades_an_outdated_hash(session: Session):
    user = service.register(session, registration())
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    proved = service.authenticate(session, Credentials(username="alice", password=PASSWORD))
    assert service.hash_is_outdated(proved)
    service.upgrade_password_hash(session, proved.id, PASSWORD)
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password(user.password_hash, PASSWORD)
    assert not service.hash_is_outdated(user)


def test_a_user_views_only_their_own_account(session: Session):
    alice = service.register(session, registration())
    bob = service.register(session, registration("bob", "bob@example.com"))
    session.flush()
    assert service.view_user(session, Caller(alice.id, "user"), alice.id) is alice
    with pytest.raises(Forbidden):
        service.view_user(session, Caller(alice.id, "user"), bob.id)
    with pytest.raises(Forbidden):
        service.view_user(session, Caller(alice.id, "user"), 999_999)


def test_an_admin_views_any_account_and_learns_which_do_not_exist(session: Session):
    alice = service.register(session, registration())
    admin = service.register(session, registration("root", "root@example.com"), role="admin")
    session.flush()
    assert service.view_user(session, Caller(admin.id, "admin"), alice.id) is alice
    with pytest.raises(NotFound):
        service.view_user(session, Caller(admin.id, "admin"), 999_999)


def test_password_change_bumps_the_token_version(session: Session):
    user = service.register(session, registration())
    session.flush()
    before = claims_of(user)
    change = PasswordChange(old_password=PASSWORD, new_password="new-password-1")
    service.change_password(session, Caller(user.id, "user"), change)
    assert user.token_version == 1
    assert service.is_revoked(session, before)
    assert not service.is_revoked(session, claims_of(user))
    assert passwords.verify_password(user.password_hash, "new-password-1")


def test_password_change_with_a_wrong_old_password_changes_nothing(session: Session):
    user = service.register(session, registration())
    session.flush()
    change = PasswordChange(old_password="not-it-at-all", new_password="new-password-1")
    with pytest.raises(InvalidCredentials):
        service.change_password(session, Caller(user.id, "user"), change)
    assert user.token_version == 0
    assert passwords.verify_password(user.password_hash, PASSWORD)


def test_revoked_tokens_stay_revoked_and_revoking_twice_is_harmless(database: Database):
    with database.unit_of_work() as session:
        user = service.register(session, registration())
        session.flush()
        token = claims_of(user)
        service.revoke_tokens(session, [token])
        service.revoke_tokens(session, [token])
    with database.unit_of_work() as session:  # a new transaction, as another request sees it
        assert service.is_revoked(session, token)
        assert not service.is_revoked(session, claims_of(user))


def test_revocation_forgets_tokens_once_they_would_have_expired(session: Session):
    user = service.register(session, registration())
    session.flush()
    expired = claims_of(user, exp=int((datetime.now(UTC) - timedelta(hours=1)).timestamp()))
    service.revoke_tokens(session, [expired])
    service.revoke_tokens(session, [claims_of(user)])
    assert session.scalar(select(func.count()).select_from(deny_list.denied)) == 1


def test_tokens_of_a_user_that_is_gone_are_revoked(session: Session):
    assert service.is_revoked(session, {"sub": "424242", "jti": "x", "ver": 0})


def test_the_documented_reserved_domains_are_the_ones_email_validator_refuses():
    assert set(RESERVED_DOMAINS) == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.com",
        "alice.test@example.com",
        "alice@test.example.com",
        "alice@shop.test",
        "alice@Shop.Test",
        "alice@x.onion",
        "alice@home.arpa",
        "alice@mail.local",
        "alice@mail.localhost",
        "alice@example.invalid",
    ],
)
def test_the_documented_email_schema_refuses_exactly_the_reserved_domains(email: str):
    schema = Registration.model_json_schema()["properties"]["email"]
    documented = re.search(schema["not"]["pattern"], email) is None
    body = {"username": "alice", "password": PASSWORD, "email": email}
    try:
        Registration.model_validate(body)
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert documented == accepted


def test_logging_in_with_an_outdated_hash_upgrades_it(user_app):
    """The hash is checked in a read-only unit of work; the upgrade is its own write."""
    client = user_app.test_client()
    body = {"username": "carol", "password": PASSWORD, "email": "carol@example.com"}
    assert client.post("/register", json=body).status_code == 201
    database = user_app.extensions["microshop"].database
    with database.unit_of_work() as session:
        carol = session.scalar(select(User).where(User.username_key == "carol"))
        carol.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    login = client.post("/login", json={"username": "carol", "password": PASSWORD})
    assert login.status_code == 200
    with database.unit_of_work(readonly=True) as session:
        carol = session.scalar(select(User).where(User.username_key == "carol"))
        assert carol.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
