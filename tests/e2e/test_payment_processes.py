"""Payments across real processes: concurrency, a SIGKILL mid-flight, split deployments."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, column, table, update
from support import (
    DATABASE_BACKENDS,
    Server,
    free_port,
    order_status_at,
    place_order_at,
    sign_up_at,
    unique,
    wait_for,
)
from waitress.server import create_server

from app.kit.database import Database

pytestmark = [pytest.mark.e2e, pytest.mark.backends(*DATABASE_BACKENDS)]


@pytest.fixture
def two_processes(tmp_path: Path, server_urls: dict[str, str]) -> Iterator[tuple[Server, Server]]:
    """Two production processes serving everything, on the same databases."""
    first = Server.start(tmp_path / "a", databases=server_urls)
    try:
        second = Server.start(tmp_path / "b", databases=server_urls, init_db=False)
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_twenty_concurrent_pays_of_one_order_charge_it_once(two_processes):
    first, second = two_processes
    headers = sign_up_at(first.url)
    order_id = place_order_at(first.url, headers)

    def pay(n: int) -> httpx.Response:
        server = (first, second)[n % 2]
        return httpx.post(
            f"{server.url}/payment/", json={"order_id": order_id}, headers=headers, timeout=60
        )

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(pay, range(20)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) == {201, 409}, statuses
    assert {r.json()["data"]["error"] for r in replies if r.status_code == 409} == {
        "order_already_paid"
    }
    payments = httpx.get(f"{first.url}/payment/", params={"order_id": order_id}, headers=headers)
    assert [p["status"] for p in payments.json()["data"]["items"]] == ["succeeded"]
    assert order_status_at(second.url, headers, order_id) == "paid"


def test_ten_concurrent_pays_with_one_key_make_one_payment(two_processes):
    first, second = two_processes
    headers = {**sign_up_at(first.url), "Idempotency-Key": "checkout-" + unique()}
    order_id = place_order_at(first.url, headers)

    def pay(n: int) -> httpx.Response:
        server = (first, second)[n % 2]
        return httpx.post(
            f"{server.url}/payment/pay", json={"order_id": order_id}, headers=headers, timeout=60
        )

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(pay, range(10)))
    created = [r for r in replies if r.status_code == 201]
    assert created, [r.text for r in replies]
    assert {r.json()["data"]["id"] for r in created} == {created[0].json()["data"]["id"]}
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in created) == 1
    others = [r for r in replies if r.status_code != 201]
    assert all(r.status_code == 409 for r in others), [r.text for r in others]
    assert {r.json()["data"]["error"] for r in others} <= {"request_in_progress"}
    payments = httpx.get(f"{first.url}/payment/", params={"order_id": order_id}, headers=headers)
    assert len(payments.json()["data"]["items"]) == 1


def leases_run_out(url: str) -> None:
    """Age the outbox leases a killed process held past their end (10 s), as if it died
    long ago: the restart must deliver what it had claimed (the clock's part, a lease that
    runs out, is tested in tests/platform/test_events.py)."""
    database = Database.connect(url, MetaData())
    try:
        with database.engine.begin() as connection:
            outbox = table("outbox", column("lease_until"))
            connection.execute(
                update(outbox)
                .where(outbox.c.lease_until.is_not(None))
                .values(lease_until=datetime(2000, 1, 1))
            )
    finally:
        database.dispose()


class BlockingProxy:
    """An HTTP proxy to one upstream that can hold event deliveries until released."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.block_events = threading.Event()
        self.event_arrived = threading.Event()
        self.release = threading.Event()
        self.http = httpx.Client(base_url=upstream, timeout=30)
        self.port = free_port()
        self.server = create_server(self, host="127.0.0.1", port=self.port, threads=4)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        if path.endswith("/internal/events") and self.block_events.is_set():
            self.event_arrived.set()
            self.release.wait(20)
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"code": 503, "msg": "held", "data": {"error": "service_unavailable"}}']
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            key[5:].replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key != "HTTP_HOST"
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        reply = self.http.request(environ["REQUEST_METHOD"], path, content=body, headers=headers)
        start_response(f"{reply.status_code} X", [("Content-Type", "application/json")])
        return [reply.content]

    def __enter__(self) -> BlockingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.server.close()
        self.thread.join(timeout=10)
        self.http.close()


def test_an_event_committed_before_a_sigkill_is_delivered_after_restart(
    tmp_path: Path, server_urls: dict[str, str]
):
    """The payment commits, the process dies before the order hears: the order ends paid."""
    orders = Server.start(
        tmp_path / "orders", databases=server_urls, MICROSHOP_SERVICES="user,order"
    )
    try:
        with BlockingProxy(orders.url) as proxy:
            payment_env = {
                "MICROSHOP_SERVICES": "payment",
                "MICROSHOP_ORDER_URL": proxy.url,
                "MICROSHOP_OUTBOX_SWEEP_SECONDS": "0.5",
            }
            payments = Server.start(tmp_path / "payments", databases=server_urls, **payment_env)
            headers = sign_up_at(orders.url)
            order_id = place_order_at(orders.url, headers)
            proxy.block_events.set()
            outcome: list[object] = []

            def pay() -> None:
                try:
                    outcome.append(
                        httpx.post(
                            f"{payments.url}/payment/",
                            json={"order_id": order_id},
                            headers=headers,
                            timeout=30,
                        )
                    )
                except httpx.TransportError as error:  # the process dies under it
                    outcome.append(error)

            paying = threading.Thread(target=pay, daemon=True)
            paying.start()
            assert proxy.event_arrived.wait(20), "payment.succeeded never left the payment process"
            os.kill(payments.process.pid, signal.SIGKILL)
            payments.process.wait(10)
            paying.join(30)
            assert isinstance(outcome[0], httpx.TransportError)  # the client never heard 201
            assert order_status_at(orders.url, headers, order_id) == "pending"
            proxy.block_events.clear()
            proxy.release.set()
            leases_run_out(server_urls["payment"])
            restarted = Server.start(
                tmp_path / "payments", databases=server_urls, init_db=False, **payment_env
            )
            try:
                assert wait_for(
                    lambda: order_status_at(orders.url, headers, order_id) == "paid", 30
                )
                listed = httpx.get(
                    f"{restarted.url}/payment/", params={"order_id": order_id}, headers=headers
                )
                assert [p["status"] for p in listed.json()["data"]["items"]] == ["succeeded"]
            finally:
                restarted.stop()
    finally:
        orders.stop()


def test_a_logout_reaches_a_payment_process_within_a_second(
    tmp_path: Path, server_urls: dict[str, str]
):
    payments = Server.start(
        tmp_path / "payments", databases=server_urls, MICROSHOP_SERVICES="payment"
    )
    users = Server.start(
        tmp_path / "users",
        databases=server_urls,
        MICROSHOP_SERVICES="user,order",
        MICROSHOP_PAYMENT_URL=payments.url,
    )
    try:
        headers = sign_up_at(users.url)
        assert httpx.get(f"{payments.url}/payment/", headers=headers).status_code == 200
        assert httpx.post(f"{users.url}/user/logout", headers=headers).status_code == 200
        logged_out = time.monotonic()

        def refused() -> bool:
            reply = httpx.get(f"{payments.url}/payment/", headers=headers)
            return reply.status_code == 401 and reply.json()["data"]["error"] == "token_revoked"

        assert wait_for(refused, 1.0)
        assert time.monotonic() - logged_out < 1.0
    finally:
        users.stop()
        payments.stop()


def test_cancelling_a_paid_order_refunds_it_across_processes(
    tmp_path: Path, server_urls: dict[str, str]
):
    """Split deployment: order and payment services in separate processes, over HTTP."""
    payment_port, order_port = free_port(), free_port()
    payments = Server.start(
        tmp_path / "payments",
        port=payment_port,
        databases=server_urls,
        MICROSHOP_SERVICES="payment",
        MICROSHOP_ORDER_URL=f"http://127.0.0.1:{order_port}",
    )
    orders = Server.start(
        tmp_path / "orders",
        port=order_port,
        databases=server_urls,
        MICROSHOP_SERVICES="user,order",
        MICROSHOP_PAYMENT_URL=f"http://127.0.0.1:{payment_port}",
    )
    try:
        headers = sign_up_at(orders.url)
        order_id = place_order_at(orders.url, headers)
        paid = httpx.post(f"{payments.url}/payment/", json={"order_id": order_id}, headers=headers)
        assert paid.status_code == 201, paid.text
        assert wait_for(lambda: order_status_at(orders.url, headers, order_id) == "paid", 5)
        assert httpx.delete(f"{orders.url}/order/{order_id}", headers=headers).status_code == 200
        assert wait_for(lambda: order_status_at(orders.url, headers, order_id) == "refunded", 5)
        payment = httpx.get(f"{payments.url}/payment/{paid.json()['data']['id']}", headers=headers)
        assert payment.json()["data"]["status"] == "refunded"
        assert payment.json()["data"]["refunded_amount"] == 42.5
    finally:
        orders.stop()
        payments.stop()
