"""Events on RabbitMQ between real processes (issue #12): the shop's sagas and
revocations across processes that know no peer for events, a broker outage in the
middle of 50 pays, two copies of a service sharing its queue, and a poison message.

Each test runs in a RabbitMQ virtual host of its own (made with rabbitmqctl, on the
server at MICROSHOP_TEST_AMQP_URL), so its queues start empty; outages go through a
TcpProxy, never the machine's broker. The sagas run on SQLite and PostgreSQL (the
embedded database with a broker is a supported set-up); the tests of the queues'
behaviour (outage, competing copies, dead letters, the worker) on PostgreSQL only, the
database of a split shop: on SQLite they would test the same queues again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import MetaData, func, select, text
from support import (
    BIN,
    ONLY_POSTGRES,
    ROOT,
    Server,
    database_urls,
    order_status_at,
    place_order_at,
    rabbitmq_vhost,
    sign_up_at,
    wait_for,
)
from tcp_proxy import TcpProxy

from app.kit.database import Database
from app.runtime.broker import Broker, Message

pytestmark = pytest.mark.e2e
AMQP_URL = os.environ.get("MICROSHOP_TEST_AMQP_URL") or None


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A virtual host of this test's own on the test broker, deleted afterwards."""
    if AMQP_URL is None:
        if os.environ.get("CI"):
            pytest.fail("CI must set MICROSHOP_TEST_AMQP_URL: no skipping RabbitMQ")
        pytest.skip("MICROSHOP_TEST_AMQP_URL is not set")
    with rabbitmq_vhost(AMQP_URL) as url:
        yield url


def via(proxy: TcpProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    return parts._replace(
        netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    ).geturl()


@dataclass
class Shop:
    """Processes of one shop on the backend under test, all on the broker."""

    broker_url: str
    folder: Path
    urls: dict[str, str]
    started: list[Server] = field(default_factory=list)

    def __call__(self, name: str, services: str, broker: str | None = None, **env: str) -> Server:
        server = Server.start(
            self.folder / name,
            MICROSHOP_SERVICES=services,
            MICROSHOP_BROKER_URL=broker or self.broker_url,
            MICROSHOP_OUTBOX_SWEEP_SECONDS="0.5",
            **{f"MICROSHOP_{n.upper()}_DATABASE_URL": url for n, url in self.urls.items()},
            **env,
        )
        self.started.append(server)
        return server


@pytest.fixture
def split(broker_url: str, backend: str, tmp_path: Path) -> Iterator[Shop]:
    shop = Shop(broker_url, tmp_path, database_urls(backend, tmp_path))
    yield shop
    for server in shop.started:
        server.stop()


def test_two_processes_exchange_every_event_through_rabbitmq(split):
    orders = split("orders", "user,order")
    payments = split("payments", "payment", MICROSHOP_ORDER_URL=orders.url)  # to read orders
    headers = sign_up_at(orders.url)
    order_id = place_order_at(orders.url, headers)
    paid = httpx.post(f"{payments.url}/payment/", json={"order_id": order_id}, headers=headers)
    assert paid.status_code == 201, paid.text
    assert wait_for(lambda: order_status_at(orders.url, headers, order_id) == "paid", 10)

    assert httpx.delete(f"{orders.url}/order/{order_id}", headers=headers).status_code == 200
    assert wait_for(lambda: order_status_at(orders.url, headers, order_id) == "refunded", 10)
    payment = httpx.get(f"{payments.url}/payment/{paid.json()['data']['id']}", headers=headers)
    assert payment.json()["data"]["status"] == "refunded"

    assert httpx.post(f"{orders.url}/user/logout", headers=headers).status_code == 200
    refused = wait_for(
        lambda: httpx.get(f"{payments.url}/payment/", headers=headers).status_code == 401, 1
    )
    assert refused, "the logout did not reach the payment process within a second"


@pytest.mark.parametrize("backend", [ONLY_POSTGRES])  # the broker's outage, not the database's
def test_a_broker_outage_in_the_middle_of_fifty_pays_loses_nothing(split, broker_url: str):
    rabbit = urlsplit(broker_url)
    with TcpProxy(rabbit.hostname or "127.0.0.1", rabbit.port or 5672) as proxy:
        through_proxy = via(proxy, broker_url)
        orders = split("orders", "user,order", broker=through_proxy)
        payments = split(
            "payments", "payment", broker=through_proxy, MICROSHOP_ORDER_URL=orders.url
        )
        headers = sign_up_at(orders.url)
        order_ids = [place_order_at(orders.url, headers) for _ in range(50)]

        def pay(order_id: int) -> int:
            body = {"order_id": order_id}
            return httpx.post(f"{payments.url}/payment/", json=body, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            first = list(pool.map(pay, order_ids[:20]))
            proxy.cut()
            during = list(pool.map(pay, order_ids[20:40]))
            time.sleep(10)  # the outage lasts ten seconds
            proxy.restore()
            after = list(pool.map(pay, order_ids[40:]))
        assert first + during + after == [201] * 50  # paying never waits for the broker

        def all_paid() -> bool:
            return all(order_status_at(orders.url, headers, oid) == "paid" for oid in order_ids)

        assert wait_for(all_paid, 90), "some order never heard of its payment"


@pytest.mark.parametrize("backend", [ONLY_POSTGRES])  # the queues' behaviour, not the database's
def test_two_copies_of_a_service_share_its_queue_and_handle_each_event_once(split):
    orders = split("orders", "user,order")
    split("orders-copy", "order")
    payments = split("payments", "payment", MICROSHOP_ORDER_URL=orders.url)
    headers = sign_up_at(orders.url)
    order_ids = [place_order_at(orders.url, headers) for _ in range(20)]
    for order_id in order_ids:
        reply = httpx.post(f"{payments.url}/payment/", json={"order_id": order_id}, headers=headers)
        assert reply.status_code == 201
    assert wait_for(
        lambda: all(order_status_at(orders.url, headers, oid) == "paid" for oid in order_ids), 20
    )
    database = Database.connect(split.urls["order"], MetaData())
    try:
        with database.unit_of_work(readonly=True) as session:
            handled = session.scalar(
                text("SELECT count(*) FROM inbox WHERE topic = 'payment.succeeded'")
            )
            failures = session.scalar(select(func.count()).select_from(text("event_failures")))
    finally:
        database.dispose()
    assert (handled, failures) == (20, 0)


@pytest.mark.parametrize("backend", [ONLY_POSTGRES])  # the queues' behaviour, not the database's
def test_a_poison_event_is_dead_lettered_while_the_rest_flow_and_retry_brings_it_back(
    split,
):
    """A payment.succeeded for an order the order service cannot find fails each time:
    after the set attempts it is a dead letter in ``microshop.order.dead``, while the
    events behind it flow on; once the order is there, ``microshop events retry`` brings
    it back and it is handled."""
    orders = split("orders", "user,order", MICROSHOP_EVENT_MAX_ATTEMPTS="2")
    payments = split("payments", "payment", MICROSHOP_ORDER_URL=orders.url)
    poison = {
        "id": uuid.uuid4().hex,
        "topic": "payment.succeeded",
        "revision": 1,
        "payload": {"payment_id": 999, "order_id": 999},
    }
    broker = Broker(split.broker_url)
    try:
        broker.publish([Message(poison["id"], poison["topic"], json.dumps(poison).encode())])
        headers = sign_up_at(orders.url)
        order_id = place_order_at(orders.url, headers)
        paid = httpx.post(f"{payments.url}/payment/", json={"order_id": order_id}, headers=headers)
        assert paid.status_code == 201
        assert wait_for(lambda: order_status_at(orders.url, headers, order_id) == "paid", 10)
        assert wait_for(
            lambda: [m.id for m in broker.dead_letters("microshop.order")] == [poison["id"]], 15
        )
    finally:
        broker.close()
    listed = orders.cli("events")
    [line] = [line for line in listed.stdout.splitlines() if poison["id"] in line]
    assert line.split()[:2] == ["order", "dead"]
    assert "attempts=2" in line

    database = Database.connect(split.urls["order"], MetaData())
    try:
        with database.unit_of_work() as session:  # the cause is fixed: the order exists
            session.execute(
                text(
                    "INSERT INTO orders (id, userid, product, price_minor, quantity, amount_minor,"
                    " currency, status, created_at, updated_at) VALUES (999, 1, 'pen', 100, 1,"
                    " 100, 'USD', 'pending', '2026-12-01 10:00:00', '2026-12-01 10:00:00')"
                )
            )
        retried = orders.cli("events", "retry", poison["id"])
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout == f"order: {poison['id']} put back in microshop.order\n"

        def handled() -> bool:
            with database.unit_of_work(readonly=True) as session:
                return session.scalar(text("SELECT status FROM orders WHERE id = 999")) == "paid"

        assert wait_for(handled, 10)
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", [ONLY_POSTGRES])  # the queues' behaviour, not the database's
def test_a_worker_consumes_the_queues_until_sigterm(split, tmp_path: Path):
    orders = split("orders", "user,order")
    worker = subprocess.Popen(
        [BIN / "microshop", "worker", "--service", "order"],
        env={**orders.env, "MICROSHOP_SERVICES": "user,order"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = worker.stdout.readline()
        assert line == "worker: consuming events-order, revocations-order\n"
        # only the main thread, in sigwait, takes SIGTERM: when a consumer thread took it,
        # the main thread went on waiting for good, now and then on a busy machine
        others = [thread for thread in threads_of(worker.pid) if thread != worker.pid]
        assert others
        assert all(blocks(worker.pid, thread, signal.SIGTERM) for thread in others)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()
        worker.stderr.close()
    refused = orders.cli("worker", MICROSHOP_BROKER_URL="")
    assert refused.returncode == 1
    assert refused.stderr == "Error: worker needs MICROSHOP_BROKER_URL: it consumes RabbitMQ\n"
    unknown = orders.cli("worker", "--service", "payment")
    assert unknown.returncode == 2
    assert "no service 'payment' is mounted here" in unknown.stderr


def threads_of(pid: int) -> list[int]:
    """The process's threads, the main one's id being ``pid`` (Linux's /proc)."""
    return [int(task) for task in os.listdir(f"/proc/{pid}/task")]


def blocks(pid: int, thread: int, signum: int) -> bool:
    """Whether the thread has ``signum`` in its signal mask (Linux's /proc); a thread that
    ended since it was listed takes no signal either."""
    try:
        status = Path(f"/proc/{pid}/task/{thread}/status").read_text()
    except FileNotFoundError:
        return True
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:"))
    return bool(int(mask, 16) >> (signum - 1) & 1)
