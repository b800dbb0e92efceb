"""Money settles after a SIGKILL at any step of paying or refunding (issue #14, items 13
and 14): a real production server, killed while its provider call is under way, on
SQLite and PostgreSQL, with a provider whose ledger outlives the process."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import ledger_provider
import psycopg
import pytest
from sqlalchemy import MetaData, column, update
from sqlalchemy import table as sql_table
from support import PASSWORD, ROOT, Server, bearer, database_urls, unique, wait_for

from app.kit.database import Database

pytestmark = pytest.mark.e2e


class CrashingShop:
    """A production shop on the backend under test whose payment provider keeps its
    ledger in ``ledger`` and stalls, after acting, while ``stalled()`` holds."""

    def __init__(self, backend: str, folder: Path):
        self.folder = folder
        self.ledger = folder / "ledger"
        self.ledger.mkdir(parents=True)
        self.urls = database_urls(backend, folder)
        self.env = {
            **{f"MICROSHOP_{name.upper()}_DATABASE_URL": url for name, url in self.urls.items()},
            "MICROSHOP_SERVICES": "user,order,payment=ledger_provider:create_app",
            "MICROSHOP_OUTBOX_SWEEP_SECONDS": "0.5",
            "LEDGER_PROVIDER_DIR": str(self.ledger),
            "PYTHONPATH": str(ROOT / "tests"),
        }
        self.server = Server.start(folder / "server", **self.env)
        name = unique("crash")
        body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
        assert httpx.post(f"{self.url}/user/register", json=body).status_code == 201
        login = httpx.post(f"{self.url}/user/login", json={"username": name, "password": PASSWORD})
        self.headers = bearer(login.json()["data"]["token"])

    @property
    def url(self) -> str:
        return self.server.url

    def place_order(self) -> int:
        body = {"product": "lamp", "price": "10.00"}
        reply = httpx.post(f"{self.url}/order/", json=body, headers=self.headers)
        return reply.json()["data"]["id"]

    def order_status(self, order_id: int) -> str:
        reply = httpx.get(f"{self.url}/order/{order_id}", headers=self.headers)
        return reply.json()["data"]["status"]

    def payment_of(self, order_id: int) -> dict:
        reply = httpx.get(
            f"{self.url}/payment/", params={"order_id": order_id}, headers=self.headers
        )
        [payment] = reply.json()["data"]["items"]
        return payment

    def kill_during(self, method: str, path: str, body: dict, *, when: Callable[[], bool]) -> None:
        """Send the request, SIGKILL the server once ``when()`` holds, and start it again."""
        outcome: list[object] = []

        def send() -> None:
            try:
                outcome.append(
                    httpx.request(
                        method, f"{self.url}{path}", json=body, headers=self.headers, timeout=60
                    )
                )
            except httpx.TransportError as error:
                outcome.append(error)

        sending = threading.Thread(target=send, daemon=True)
        sending.start()
        assert wait_for(when, 20), "the request never reached the step to kill it at"
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(10)
        sending.join(30)
        assert isinstance(outcome[0], httpx.TransportError)  # the client never heard back

    def restart(self) -> None:
        self.server = Server.start(
            self.folder / "server", port=int(self.url.rsplit(":", 1)[1]), init_db=False, **self.env
        )

    def as_if_dead_long_ago(self, table: str) -> None:
        """Age the rows under way past the lease, as if the kill were minutes ago."""
        database = Database.connect(self.urls["payment"], MetaData())
        try:
            with database.engine.begin() as connection:
                long_ago = datetime(2000, 1, 1)
                connection.execute(
                    update(sql_table(table, column("updated_at"))).values(updated_at=long_ago)
                )
        finally:
            database.dispose()

    @contextmanager
    def stalled(self) -> Iterator[None]:
        (self.ledger / "stall").touch()
        try:
            yield
        finally:
            (self.ledger / "stall").unlink(missing_ok=True)

    @contextmanager
    def refunds_locked(self, backend: str) -> Iterator[None]:
        """Another transaction holds the refunds table (SQLite: the whole database)."""
        if backend == "sqlite":
            holder = sqlite3.connect(
                self.urls["payment"].removeprefix("sqlite:///"), isolation_level=None
            )
            holder.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            return
        with psycopg.connect(self.urls["payment"]) as holder:
            holder.execute("LOCK TABLE refunds IN ACCESS EXCLUSIVE MODE")
            yield
            holder.rollback()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def shop(backend: str, tmp_path: Path) -> Iterator[CrashingShop]:
    shop = CrashingShop(backend, tmp_path)
    yield shop
    shop.stop()


def kinds(shop: CrashingShop) -> list[str]:
    return [entry["kind"] for entry in ledger_provider.entries(shop.ledger)]


def test_a_kill_while_the_provider_refunds_is_settled_and_the_cancel_ends_refunded(
    shop: CrashingShop,
):
    order_id = shop.place_order()
    paid = httpx.post(f"{shop.url}/payment/", json={"order_id": order_id}, headers=shop.headers)
    payment_id = paid.json()["data"]["id"]
    with shop.stalled():
        shop.kill_during(
            "POST", f"/payment/{payment_id}/refund", {}, when=lambda: "refund" in kinds(shop)
        )
    shop.restart()
    counted = shop.payment_of(order_id)  # counted, pending: one fact, not a count alone
    assert (counted["status"], counted["refunded_amount"]) == ("succeeded", 10.0)
    cancel = httpx.delete(f"{shop.url}/order/{order_id}", headers=shop.headers)
    assert cancel.json()["data"]["status"] == "cancelled"
    shop.as_if_dead_long_ago("refunds")
    assert wait_for(lambda: shop.order_status(order_id) == "refunded", 30)
    assert shop.payment_of(order_id)["status"] == "refunded"
    refunds = [e for e in ledger_provider.entries(shop.ledger) if e["kind"] == "refund"]
    assert len({entry["reference"] for entry in refunds}) == 1  # made again under one key
    assert sum(entry["amount_minor"] for entry in refunds[:1]) == 1000
    again = httpx.post(f"{shop.url}/payment/{payment_id}/refund", json={}, headers=shop.headers)
    assert again.json()["data"]["error"] == "payment_not_refundable"


def test_a_kill_while_a_refund_waits_for_its_lock_counts_nothing(shop: CrashingShop, backend: str):
    order_id = shop.place_order()
    paid = httpx.post(f"{shop.url}/payment/", json={"order_id": order_id}, headers=shop.headers)
    payment_id = paid.json()["data"]["id"]
    with shop.refunds_locked(backend):
        started = time.monotonic()
        shop.kill_during(
            "POST", f"/payment/{payment_id}/refund", {}, when=lambda: time.monotonic() - started > 2
        )
    shop.restart()
    assert shop.payment_of(order_id)["refunded_amount"] == 0.0
    cancel = httpx.delete(f"{shop.url}/order/{order_id}", headers=shop.headers)
    assert cancel.json()["data"]["status"] == "cancelled"
    assert wait_for(lambda: shop.order_status(order_id) == "refunded", 30)
    assert (shop.payment_of(order_id)["status"], kinds(shop)) == ("refunded", ["charge", "refund"])


def test_a_kill_while_the_provider_charges_is_settled_and_a_cancel_refunds_it(shop: CrashingShop):
    order_id = shop.place_order()
    with shop.stalled():
        shop.kill_during(
            "POST", "/payment/", {"order_id": order_id}, when=lambda: "charge" in kinds(shop)
        )
    shop.restart()
    cancel = httpx.delete(f"{shop.url}/order/{order_id}", headers=shop.headers)
    assert cancel.json()["data"]["status"] == "cancelled"
    shop.as_if_dead_long_ago("payments")
    assert wait_for(lambda: shop.order_status(order_id) == "refunded", 30)
    payment = shop.payment_of(order_id)
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", 10.0)
    assert kinds(shop) == ["charge", "refund"]
