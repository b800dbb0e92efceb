"""A write that loses a lock conflict answers 503 ``service_unavailable`` with
``Retry-After``, rolled back, and the client's retry succeeds: on every database.

A raw connection holds a real lock (SQLite's write lock, a row lock on PostgreSQL and
MariaDB) while the API writes the same row; the app waits only briefly for it (a short
SQLite busy timeout, PostgreSQL's ``lock_timeout``, MariaDB's
``innodb_lock_wait_timeout``), so no test waits seconds for a timeout.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url
from support import (
    DATABASE_BACKENDS,
    ONLY_MYSQL,
    ONLY_POSTGRES,
    SECRET,
    Account,
    Reply,
    ServiceClient,
    Shop,
    WsgiTransport,
    assert_error,
    database_urls,
    make_settings,
)
from werkzeug.test import Client

from app.kit import database
from app.kit.auth import issue_service_token
from app.kit.database import Database, DatabaseBusy
from app.kit.service import parts_of
from app.runtime.background import Repeating
from app.runtime.composition import Application
from app.settings import Settings
from order_service.models import Order

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

SQLITE_BUSY_TIMEOUT_MS = 100
POSTGRESQL_LOCK_WAIT = "-c lock_timeout=200ms -c deadlock_timeout=50ms"
"""Superuser settings (deadlock_timeout), as the test database's ``postgres`` is."""
MYSQL_LOCK_WAIT = "SET SESSION innodb_lock_wait_timeout=1"
"""Its smallest value, in seconds."""


def short_lock_wait(backend: str, url: str) -> str:
    """``url``, with the app's connections waiting only briefly for a lock."""
    parsed = make_url(url)
    if backend == "postgresql":
        options = f"{parsed.query.get('options', '')} {POSTGRESQL_LOCK_WAIT}".strip()
        parsed = parsed.update_query_dict({"options": options})
    elif backend == "mysql":
        parsed = parsed.update_query_dict({"init_command": MYSQL_LOCK_WAIT})
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def raw_urls(backend: str, tmp_path: Path) -> dict[str, str]:
    """Each service's fresh database, as a raw connection reaches it."""
    return database_urls(backend, tmp_path)


@pytest.fixture
def settings(
    backend: str, raw_urls: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Production settings whose databases wait for a lock a fraction of a second."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", SQLITE_BUSY_TIMEOUT_MS)
    urls = {name: short_lock_wait(backend, url) for name, url in raw_urls.items()}
    return make_settings(tmp_path, urls)


@pytest.fixture
def api(application: Application) -> Shop:
    """The shop's services in-process (not ``shop``, which conftest runs on waitress too)."""
    client = Client(application)

    def clients(name: str) -> ServiceClient:
        return ServiceClient(WsgiTransport(client, lambda: None, f"/{name}"), lambda *_: (1, ""))

    return Shop(users=clients("user"), orders=clients("order"), payments=clients("payment"))


@pytest.fixture
def alice(api: Shop) -> Account:
    return api.users.login(api.users.register())


class RawConnection:
    """A connection of the test's own, outside the app, that holds locks until rolled back."""

    def __init__(self, backend: str, url: str):
        self.backend = backend
        if backend == "sqlite":
            self.dbapi: Any = sqlite3.connect(
                make_url(url).database, isolation_level=None, check_same_thread=False
            )
        elif backend == "postgresql":
            self.dbapi = psycopg.connect(url)
        else:
            parsed = make_url(url)
            self.dbapi = pymysql.connect(
                host=parsed.host,
                port=parsed.port or 3306,
                user=parsed.username,
                password=parsed.password or "",
                database=parsed.database,
            )

    def execute(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """``statement`` with ``?`` for each parameter, on every database."""
        if self.backend != "sqlite":
            statement = statement.replace("?", "%s")
        cursor = self.dbapi.cursor()
        cursor.execute(statement, params)
        rows = list(cursor.fetchall()) if cursor.description else []
        cursor.close()
        return rows

    def begin(self) -> None:
        """A transaction; on SQLite it holds the write lock at once."""
        if self.backend == "sqlite":
            self.execute("BEGIN IMMEDIATE")
        elif self.backend == "mysql":
            self.execute("BEGIN")

    def lock_row(self, table: str, row_id: int) -> None:
        """Lock one row for writing (on SQLite, the whole database) until rolled back."""
        self.begin()
        if self.backend != "sqlite":
            self.execute(f"SELECT id FROM {table} WHERE id = ? FOR UPDATE", row_id)  # noqa: S608 (a table the test names)

    def rollback(self) -> None:
        if self.backend == "sqlite":
            self.execute("ROLLBACK")
        else:
            self.dbapi.rollback()

    def close(self) -> None:
        self.dbapi.close()


@contextmanager
def locked(backend: str, url: str, table: str, row_id: int) -> Iterator[RawConnection]:
    """A row of ``table`` locked by another connection for the block."""
    raw = RawConnection(backend, url)
    try:
        raw.lock_row(table, row_id)
        yield raw
        raw.rollback()
    finally:
        raw.close()


def assert_busy(reply: Reply, service: str) -> None:
    data = assert_error(reply, 503, "service_unavailable")
    assert reply.json["msg"] == f"{service} database is busy: retry"
    assert data["services"] == {service: "busy"}
    assert reply.headers["Retry-After"] == "1"


def assert_logged_as_warning(caplog: pytest.LogCaptureFixture, service: str) -> None:
    """A warning line per lost conflict, and no traceback anywhere."""
    busy = [record for record in caplog.records if "database is busy" in record.getMessage()]
    assert busy, caplog.text
    assert {record.levelno for record in busy} == {logging.WARNING}
    assert f"{service} database is busy" in busy[0].getMessage()
    assert not [record for record in caplog.records if record.exc_info], caplog.text


def test_a_cancel_that_waits_too_long_for_the_order_is_a_503_to_retry(
    api: Shop,
    alice: Account,
    backend: str,
    raw_urls: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = api.order(alice)
    with locked(backend, raw_urls["order"], "orders", order["id"]):
        assert_busy(api.orders.delete(f"/{order['id']}", headers=alice.headers), "order")
        unchanged = api.orders.get(f"/{order['id']}", headers=alice.headers)  # reads never wait
        assert unchanged.json["data"]["status"] == "pending"
    assert_logged_as_warning(caplog, "order")
    retried = api.orders.delete(f"/{order['id']}", headers=alice.headers)
    assert retried.status_code == 200, retried.text
    assert retried.json["data"]["status"] == "cancelled"


def test_a_refund_that_waits_too_long_frees_its_key_and_records_nothing(
    api: Shop,
    alice: Account,
    backend: str,
    raw_urls: dict[str, str],
    application: Application,
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = api.order(alice, price="10.00")
    paid = api.pay(alice, order["id"])
    assert paid.status_code == 201, paid.text
    payment = paid.json["data"]
    request = {
        "json": {"amount": "4.00"},
        "headers": {**alice.headers, "Idempotency-Key": "refund-once"},
    }
    with locked(backend, raw_urls["payment"], "payments", payment["id"]):
        assert_busy(api.payments.post(f"/{payment['id']}/refund", **request), "payment")
    assert_logged_as_warning(caplog, "payment")
    payments = parts_of(application.services["payment"]).database
    assert rows(payments, "SELECT count(*) FROM refunds") == 0
    assert rows(payments, "SELECT count(*) FROM idempotency_keys") == 0  # the key is free
    now = api.payments.get(f"/{payment['id']}", headers=alice.headers).json["data"]
    assert (now["status"], now["refunded_amount"]) == ("succeeded", 0)

    retried = api.payments.post(f"/{payment['id']}/refund", **request)
    assert retried.status_code == 201, retried.text
    again = api.payments.post(f"/{payment['id']}/refund", **request)
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.json == retried.json
    now = api.payments.get(f"/{payment['id']}", headers=alice.headers).json["data"]
    assert (now["status"], now["refunded_amount"]) == ("partially_refunded", 4)


def test_a_payment_that_waits_too_long_charges_nothing_and_frees_its_key(
    api: Shop,
    alice: Account,
    backend: str,
    raw_urls: dict[str, str],
    application: Application,
) -> None:
    """The pay's writes are on the payment database: on SQLite the key's claim already
    waits; elsewhere the claim is made, the reservation waits, and the claim is freed."""
    order = api.order(alice)
    headers = {**alice.headers, "Idempotency-Key": "pay-once"}
    payments = parts_of(application.services["payment"]).database
    raw = RawConnection(backend, raw_urls["payment"])
    try:
        raw.begin()
        if backend != "sqlite":  # an uncommitted charge of the same order holds its unique entry
            raw.execute(
                "INSERT INTO payments (order_id, userid, amount_minor, currency, status,"
                " refunded_minor, method, charged_order_id, created_at, updated_at)"
                " VALUES (?, ?, 1999, 'USD', 'processing', 0, 'tok_visa', ?, ?, ?)",
                order["id"],
                alice.id,
                order["id"],
                *[time.strftime("%Y-%m-%d %H:%M:%S")] * 2,
            )
        assert_busy(
            api.payments.post("/", json={"order_id": order["id"]}, headers=headers), "payment"
        )
        raw.rollback()
    finally:
        raw.close()
    assert rows(payments, "SELECT count(*) FROM payments") == 0
    assert rows(payments, "SELECT count(*) FROM idempotency_keys") == 0
    assert api.orders.get(f"/{order['id']}", headers=alice.headers).json["data"]["status"] == (
        "pending"
    )
    retried = api.payments.post("/", json={"order_id": order["id"]}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert api.orders.get(f"/{order['id']}", headers=alice.headers).json["data"]["status"] == "paid"


def rows(database: Database, statement: str) -> Any:
    with database.unit_of_work(readonly=True) as session:
        return session.scalar(text(statement))


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Polled every 0.15 s: InnoDB refreshes ``innodb_trx`` only when it was not read for
    0.1 s, so a faster poll would never see the wait begin."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.15)


@pytest.mark.parametrize("backend", [ONLY_POSTGRES, ONLY_MYSQL])
def test_the_unit_of_work_a_deadlock_picks_is_rolled_back_as_busy(
    api: Shop,
    alice: Account,
    backend: str,
    raw_urls: dict[str, str],
    application: Application,
) -> None:
    """The raw connection holds order A and waits for B; the app holds B and asks for A.
    The app's side is made the one to give way: on PostgreSQL it checks for deadlocks
    first (a shorter ``deadlock_timeout``), on MariaDB it has changed less."""
    first, second = api.order(alice)["id"], api.order(alice)["id"]
    orders = parts_of(application.services["order"]).database
    raw = RawConnection(backend, raw_urls["order"])
    watcher = RawConnection(backend, raw_urls["order"])
    if backend == "postgresql":
        raw.execute("SET deadlock_timeout = '10s'")
        raw_id = raw.execute("SELECT pg_backend_pid()")[0][0]
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE pid = ? AND wait_event_type = 'Lock'"
    else:
        raw.execute("SET SESSION innodb_lock_wait_timeout = 10")
        raw_id = raw.execute("SELECT CONNECTION_ID()")[0][0]
        waiting = (
            "SELECT count(*) FROM information_schema.innodb_trx"
            " WHERE trx_mysql_thread_id = ? AND trx_state = 'LOCK WAIT'"
        )
        watcher.dbapi.autocommit(True)
    holding_second, raw_waits = threading.Event(), threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def app_side() -> None:
        try:
            with orders.unit_of_work() as session:
                lock = select(Order.id).with_for_update()
                session.execute(lock.where(Order.id == second))
                holding_second.set()
                raw_waits.wait(5)
                session.execute(lock.where(Order.id == first))
            outcome["app"] = None
        except BaseException as error:
            outcome["app"] = error

    def raw_side() -> None:
        try:
            raw.execute("UPDATE orders SET product = 'raw' WHERE id = ?", second)
            outcome["raw"] = None
        except BaseException as error:
            outcome["raw"] = error

    try:
        raw.begin()
        raw.execute("UPDATE orders SET product = 'raw' WHERE id = ?", first)
        app = threading.Thread(target=app_side)
        app.start()
        assert holding_second.wait(5)
        other = threading.Thread(target=raw_side)
        other.start()
        wait_until(lambda: watcher.execute(waiting, raw_id)[0][0] == 1)
        raw_waits.set()
        app.join(10)
        other.join(10)
        raw.rollback()
    finally:
        raw.close()
        watcher.close()
    assert outcome["raw"] is None
    assert isinstance(outcome["app"], DatabaseBusy), outcome["app"]
    assert outcome["app"].message == "order database is busy: retry"
    assert "deadlock" in outcome["app"].conflict.lower()
    with orders.unit_of_work() as session:  # the database is usable at once
        assert session.scalar(select(Order.product).where(Order.id == second)) == "pen"


def test_background_work_that_loses_a_lock_is_a_warning_and_runs_again(
    api: Shop,
    alice: Account,
    backend: str,
    raw_urls: dict[str, str],
    application: Application,
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = api.order(alice)["id"]
    orders = parts_of(application.services["order"]).database

    def touch() -> None:
        with orders.unit_of_work() as session:
            session.execute(update(Order).where(Order.id == order).values(product="touched"))

    chore = Repeating("touch-order", touch, every=60)
    with locked(backend, raw_urls["order"], "orders", order):
        chore.run_once()
    (said,) = [record for record in caplog.records if record.name == "microshop.background"]
    assert (said.levelno, said.exc_info) == (logging.WARNING, None)
    assert "touch-order cannot run: order database is busy: retry" in said.getMessage()
    chore.run_once()
    assert api.orders.get(f"/{order}", headers=alice.headers).json["data"]["product"] == "touched"


def test_an_event_whose_handler_loses_a_lock_is_handled_again_later(
    api: Shop,
    alice: Account,
    backend: str,
    raw_urls: dict[str, str],
    application: Application,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where the lock is a row's, the inbox records the failure to handle it again; where
    it is SQLite's whole database, the inbox cannot, and answers 503 for the sender to retry."""
    order = api.order(alice)["id"]
    event = {
        "id": uuid.uuid4().hex,
        "topic": "payment.succeeded",
        "payload": {"payment_id": 1, "order_id": order},
    }
    client = Client(application)
    sender = {"Authorization": f"Bearer {issue_service_token(SECRET, 'payment')}"}
    with locked(backend, raw_urls["order"], "orders", order):
        reply = client.post("/order/internal/events", json=event, headers=sender)
    if backend == "sqlite":
        assert (reply.status_code, reply.headers["Retry-After"]) == (503, "1")
    else:
        assert (reply.status_code, reply.get_json()["data"]) == (200, {"outcome": "retry"})
        orders = parts_of(application.services["order"]).database
        assert rows(orders, "SELECT count(*) FROM event_failures") == 1
    assert "order database is busy" in caplog.text
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert api.orders.get(f"/{order}", headers=alice.headers).json["data"]["status"] == "pending"
    again = client.post("/order/internal/events", json=event, headers=sender)
    assert (again.status_code, again.get_json()["data"]) == (200, {"outcome": "done"})
    assert api.orders.get(f"/{order}", headers=alice.headers).json["data"]["status"] == "paid"
