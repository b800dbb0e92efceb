"""The deny list in memory: a request's revocation check reads no database, yet a logout
or a password change reaches every process sharing the database within a second, and a
process started later knows every revocation made before it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from support import PASSWORD, SERVICES, bearer, database_urls, make_settings, unique
from werkzeug.test import Client

from app.kit.service import parts_of
from app.runtime.composition import Application, create_application
from app.settings import ServiceSpec


@pytest.fixture
def processes(backend: str, tmp_path: Path) -> Iterator[Callable[..., Application]]:
    """Applications on the same databases, as separate processes of one shop would be."""
    urls = database_urls(backend, tmp_path)
    made: list[Application] = []

    def start(services: tuple[str, ...] = SERVICES, **overrides) -> Application:
        specs = tuple(ServiceSpec.parse(name) for name in services)
        settings = make_settings(tmp_path, urls, services=specs, **overrides)
        if not made:  # the first one makes the tables, as `microshop migrate` would
            with_tables = create_application(settings, deliver_events=False)
            for app in with_tables.services.values():
                parts_of(app).database.create_schema()
            with_tables.dispose()
        made.append(create_application(settings))
        return made[-1]

    yield start
    for application in made:
        application.dispose()


def signed_up(client: Client) -> tuple[str, dict[str, str]]:
    username = unique()
    body = {"username": username, "password": PASSWORD, "email": f"{username}@example.com"}
    assert client.post("/user/register", json=body).status_code == 201
    login = client.post("/user/login", json={"username": username, "password": PASSWORD})
    return username, bearer(login.get_json()["data"]["access_token"])


def seconds_until_refused(client: Client, path: str, headers: dict[str, str]) -> float:
    start = time.monotonic()
    while True:
        reply = client.get(path, headers=headers)
        if reply.status_code == 401:
            assert reply.get_json()["data"]["error"] == "token_revoked"
            return time.monotonic() - start
        assert reply.status_code == 200, reply.get_data(as_text=True)
        assert time.monotonic() - start < 5, "the revocation never arrived"
        time.sleep(0.02)


def test_a_request_reads_no_deny_list_table(processes):
    shop = processes(outbox_sweep_seconds=0)
    client = Client(shop)
    _username, alice = signed_up(client)
    order_id = client.post("/order/", json={"product": "pen", "price": 2}, headers=alice)
    order_id = order_id.get_json()["data"]["id"]
    assert client.get(f"/order/{order_id}", headers=alice).status_code == 200  # loaded now

    for thread in shop.background:  # nothing in the background may add its own queries
        thread.stop()
    statements: list[str] = []
    engine = parts_of(shop.services["order"]).database.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert client.get(f"/order/{order_id}", headers=alice).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [s for s in statements if "denied_tokens" in s or "token_versions" in s] == []
    assert any("FROM orders" in statement for statement in statements)


def test_a_logout_is_refused_by_another_process_within_a_second(processes):
    shop = processes()
    other_orders = processes(("order",))  # another copy of the order service
    client, other = Client(shop), Client(other_orders)
    _username, alice = signed_up(client)
    assert other.get("/order/", headers=alice).status_code == 200  # it knows no revocation yet

    assert client.post("/user/logout", headers=alice).status_code == 200
    assert client.get("/order/", headers=alice).status_code == 401  # this process: at once
    assert seconds_until_refused(other, "/order/", alice) < 1.0

    latecomer = Client(processes(("order",)))  # started after the logout
    reply = latecomer.get("/order/", headers=alice)
    assert reply.status_code == 401
    assert reply.get_json()["data"]["error"] == "token_revoked"


def test_a_password_change_is_refused_by_another_process_within_a_second(processes):
    shop = processes()
    other_payments = processes(("payment",))
    client, other = Client(shop), Client(other_payments)
    _username, alice = signed_up(client)
    assert other.get("/payment/", headers=alice).status_code == 200

    change = {"old_password": PASSWORD, "new_password": "a-brand-new-passphrase"}
    assert client.post("/user/password", json=change, headers=alice).status_code == 200
    assert seconds_until_refused(other, "/payment/", alice) < 1.0


def test_a_revocation_heard_from_the_broker_counts_before_any_refresh(settings):
    """A process's own queue hands it revocations at once (``Revocations.learn``): no
    database read, no wait for the next refresh."""
    from datetime import UTC, datetime, timedelta

    from app.kit.topics import TokenRevoked, UserTokensInvalidated
    from order_service import create_app

    app = create_app(settings)
    parts = parts_of(app)
    parts.database.create_schema()
    try:
        revocations = parts.revocations
        revocations.refresh()  # loaded: from here on only refresh() or learn() add entries
        expires = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
        claims = {"jti": "j" * 32, "sub": "7", "ver": 1}
        assert not revocations.is_revoked(claims)
        revocations.learn(TokenRevoked(jti="j" * 32, user_id=7, expires_at=expires))
        assert revocations.is_revoked(claims)
        other = {"jti": "k" * 32, "sub": "7", "ver": 1}
        assert not revocations.is_revoked(other)
        revocations.learn(UserTokensInvalidated(user_id=7, version=2))
        assert revocations.is_revoked(other)
    finally:
        parts.database.dispose()
