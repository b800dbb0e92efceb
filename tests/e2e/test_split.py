"""The split deployment of issue #15, for real: nginx, run with the config deploy/ ships, in
front of two user, two order and two payment processes (``microshop serve``, one service
each), on PostgreSQL (a schema per service, shared by its copies), with the login limit
in Redis and the events on RabbitMQ (a virtual host of this module's own). The peers call
each other through nginx, as clients do.

One set of processes serves the whole module; the last test SIGKILLs a payment copy.
The payment copies share a provider whose ledger is a file (``ledger_provider``), as a
real provider's account outlives any process: the survivor can then ask it what the dead
copy charged, and the test can count the charges."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import httpx
import ledger_provider
import psycopg
import pytest
from support import (
    BIN,
    PASSWORD,
    ROOT,
    Server,
    bearer,
    drop_postgres_schema,
    free_port,
    fresh_postgres_schema,
    order_status_at,
    place_order_at,
    rabbitmq_vhost,
    server_environment,
    sign_up_at,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e
NGINX = Path("/usr/sbin/nginx")
SHIPPED = ROOT / "deploy" / "nginx" / "microshop.conf"
COPIES = {"user": 2, "order": 2, "payment": 2}
ADDRESSES = re.compile(r"\s*(server [\w.:-]+|listen [\w.:-]+);")
"""The lines of the shipped config that name where things are: the only ones rewritten."""


def required() -> dict[str, str]:
    """The servers this module needs; without one it skips, except in CI, where it fails."""
    needs = {
        "postgres": os.environ.get("MICROSHOP_TEST_POSTGRES_URL", ""),
        "redis": os.environ.get("MICROSHOP_TEST_REDIS_URL", ""),
        "amqp": os.environ.get("MICROSHOP_TEST_AMQP_URL", ""),
        "nginx": str(NGINX) if NGINX.exists() else "",
    }
    missing = [name for name, value in needs.items() if not value]
    if missing:
        message = f"the split test needs {', '.join(missing)}"
        if "nginx" in missing:
            message += f": {NGINX} is missing (`make test` installs Debian's nginx)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return needs


def gateway_config(shipped: str, copies: dict[str, list[str]], port: int) -> str:
    """The shipped config with each upstream's ``server`` line replaced by the addresses of
    that service's copies, and nginx listening on ``port`` of the loopback."""
    lines, upstream = [], None
    for line in shipped.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        if match := re.fullmatch(r"upstream microshop_(\w+) \{", line.strip()):
            upstream = match[1]
        elif line.strip() == "}":
            upstream = None
        if upstream and ADDRESSES.fullmatch(line):
            lines += [f"{indent}server {address};" for address in copies[upstream]]
        elif ADDRESSES.fullmatch(line):
            lines.append(f"{indent}listen 127.0.0.1:{port};")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


class Nginx:
    """nginx in the foreground, one process, with a top-level config in ``folder`` that
    includes ``site`` (its pid, logs and temporary files in ``folder`` too)."""

    def __init__(self, folder: Path, site: str, port: int):
        folder.mkdir()
        (folder / "microshop.conf").write_text(site)
        (folder / "nginx.conf").write_text(
            f"""daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/microshop.conf;
}}
"""
        )
        self.folder = folder
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [NGINX, "-p", folder, "-e", folder / "error.log", "-c", folder / "nginx.conf"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if not wait_for(self._up, 10):
            self.stop()
            raise RuntimeError(f"nginx did not start: {(folder / 'error.log').read_text()}")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(self.folder / 'error.log').read_text()}")
        try:
            httpx.get(self.url, timeout=1)
        except httpx.TransportError:
            return False
        return True

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Split:
    gateway: Nginx
    site: str
    copies: dict[str, list[Server]]
    database_urls: dict[str, str]
    ledger: Path

    @property
    def url(self) -> str:
        return self.gateway.url

    def every_copy(self) -> list[Server]:
        return [server for servers in self.copies.values() for server in servers]

    def query(self, service: str, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.database_urls[service], autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()


def serve_copy(folder: Path, env: dict[str, str], *, migrate: bool) -> Server:
    """``microshop serve`` of one service in ``env``, after ``microshop migrate`` for the
    first copy of each (the others find their schema done). As ``Server.start``, with the
    longer wait that six processes starting at once on a few cores need."""
    folder.mkdir()
    env = server_environment(folder, **env)
    if migrate:
        command = [BIN / "microshop", "migrate"]
        subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    log = folder / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [BIN / "microshop", "serve", f"--port={port}"],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", env, log)
    try:
        server.wait_until_up(timeout=60)
    except RuntimeError:
        server.stop()
        raise
    return server


def stop_all(servers: list[Server]) -> None:
    running = [server for server in servers if server.process.poll() is None]
    if running:
        with ThreadPoolExecutor(len(running)) as pool:
            list(pool.map(Server.stop, running))


def start_all(starts: list[Callable[[], Server]]) -> list[Server]:
    """The servers, started at once, in order; if one fails, none is left running."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(start) for start in starts]
        wait(futures)
    failed = [future.exception() for future in futures if future.exception() is not None]
    if failed:
        stop_all([future.result() for future in futures if future.exception() is None])
        raise failed[0]
    return [future.result() for future in futures]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    needs = required()
    folder = tmp_path_factory.mktemp("split")
    ledger = folder / "ledger"
    ledger.mkdir()
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    schemas = {name: f"split_{os.getpid()}_{name}" for name in COPIES}
    urls = {
        name: fresh_postgres_schema(needs["postgres"], schema) for name, schema in schemas.items()
    }
    mounted = {
        "user": "user",
        "order": "order",
        "payment": "payment=ledger_provider:create_app",
    }
    with rabbitmq_vhost(needs["amqp"]) as broker_url:
        common = {
            "MICROSHOP_BROKER_URL": broker_url,
            "MICROSHOP_REDIS_URL": needs["redis"],
            "MICROSHOP_TRUSTED_PROXY": "127.0.0.1",
            "MICROSHOP_OUTBOX_SWEEP_SECONDS": "0.5",
            **{f"MICROSHOP_{name.upper()}_URL": gateway_url for name in COPIES},
            "LEDGER_PROVIDER_DIR": str(ledger),
            "PYTHONPATH": str(ROOT / "tests"),
        }

        def copy(name: str, number: int) -> Callable[[], Server]:
            env = {
                **common,
                "MICROSHOP_SERVICES": mounted[name],
                f"MICROSHOP_{name.upper()}_DATABASE_URL": urls[name],
            }
            return functools.partial(
                serve_copy, folder / f"{name}-{number}", env, migrate=number == 1
            )

        started: list[Server] = []
        try:
            started += start_all([copy(name, 1) for name in COPIES])
            started += start_all(
                [copy(name, n) for name in COPIES for n in range(2, COPIES[name] + 1)]
            )
            copies = {
                name: [server for server in started if server.log.parent.name.startswith(name)]
                for name in COPIES
            }
            addresses = {
                name: [server.url.removeprefix("http://") for server in servers]
                for name, servers in copies.items()
            }
            site = gateway_config(SHIPPED.read_text(), addresses, port)
            gateway = Nginx(folder / "nginx", site, port)
            try:
                yield Split(gateway, site, copies, urls, ledger)
            finally:
                gateway.stop()
        finally:
            stop_all(started)
            for schema in schemas.values():
                drop_postgres_schema(needs["postgres"], schema)


def test_nginx_runs_the_shipped_config_with_only_the_addresses_rewritten(split: Split):
    shipped = SHIPPED.read_text().splitlines()
    written = split.site.splitlines()
    assert [line for line in written if not ADDRESSES.fullmatch(line)] == [
        line for line in shipped if not ADDRESSES.fullmatch(line)
    ]
    assert [line.strip() for line in shipped if ADDRESSES.fullmatch(line)] == [
        "server user:8080;",
        "server order:8080;",
        "server payment:8080;",
        "listen 8080;",
    ]
    servers = [line.strip() for line in written if ADDRESSES.fullmatch(line)][:-1]
    assert servers == [
        f"server {server.url.removeprefix('http://')};" for server in split.every_copy()
    ]


def test_a_customer_orders_pays_refunds_and_cancels_through_nginx(split: Split):
    name = unique("split")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert httpx.post(f"{split.url}/user/register", json=body).status_code == 201
    login = httpx.post(f"{split.url}/user/login", json={"username": name, "password": PASSWORD})
    headers = bearer(login.json()["data"]["access_token"])
    order_id = place_order_at(split.url, headers)
    paid = httpx.post(f"{split.url}/payment/", json={"order_id": order_id}, headers=headers)
    assert paid.status_code == 201, paid.text
    payment_id = paid.json()["data"]["id"]
    assert wait_for(lambda: order_status_at(split.url, headers, order_id) == "paid", 10)

    refund = httpx.post(
        f"{split.url}/payment/{payment_id}/refund", json={"amount": 12.5}, headers=headers
    )
    assert refund.status_code == 201, refund.text
    cancel = httpx.delete(f"{split.url}/order/{order_id}", headers=headers)
    assert cancel.json()["data"]["status"] == "cancelled"
    assert wait_for(lambda: order_status_at(split.url, headers, order_id) == "refunded", 10)
    payment = httpx.get(f"{split.url}/payment/{payment_id}", headers=headers).json()["data"]
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", 42.5)

    unpaid = place_order_at(split.url, headers)
    cancel = httpx.delete(f"{split.url}/order/cancel/{unpaid}", headers=headers)
    assert cancel.json()["data"]["status"] == "cancelled"


def test_fifty_concurrent_pays_of_one_order_through_nginx_charge_it_once(split: Split):
    headers = sign_up_at(split.url)
    order_id = place_order_at(split.url, headers, price="10.00")

    def pay(_: int) -> httpx.Response:
        body = {"order_id": order_id}
        return httpx.post(f"{split.url}/payment/", json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(pay, range(50)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [201] + [409] * 49, statuses
    assert {r.json()["data"]["error"] for r in replies if r.status_code == 409} == {
        "order_already_paid"
    }
    [[charged]] = split.query(
        "payment", "SELECT count(*) FROM payments WHERE order_id = %s", order_id
    )
    assert charged == 1
    assert wait_for(lambda: order_status_at(split.url, headers, order_id) == "paid", 10)


def test_a_logout_is_refused_by_every_copy_within_a_second(split: Split):
    headers = sign_up_at(split.url)
    paths = {"user": "/user/me", "order": "/order/", "payment": "/payment/"}
    for name, servers in split.copies.items():
        for server in servers:
            assert httpx.get(server.url + paths[name], headers=headers).status_code == 200
    assert httpx.post(f"{split.url}/user/logout", headers=headers).status_code == 200
    deadline = time.monotonic() + 1.0

    def refused(url: str) -> bool:
        reply = httpx.get(url, headers=headers)
        return reply.status_code == 401 and reply.json()["data"]["error"] == "token_revoked"

    # each copy knows, not only the ones nginx picks: asked in turn until all refuse
    waiting = {
        server.url + paths[name] for name, servers in split.copies.items() for server in servers
    }
    while waiting and time.monotonic() < deadline:
        waiting -= {url for url in waiting if refused(url)}
    assert not waiting, f"still accepted after a second: {sorted(waiting)}"
    for path in paths.values():
        assert refused(split.url + path)


def client_at(address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z is this machine)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_the_login_limit_holds_across_copies_per_client_address_and_ignores_a_spoof(
    split: Split,
):
    name = unique("limited")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert httpx.post(f"{split.url}/user/register", json=body).status_code == 201
    wrong = {"username": name, "password": "wrong-password"}
    with client_at("127.0.0.2") as mallory, client_at("127.0.0.3") as alice:
        for _ in range(10):  # the default limit, 10 a minute; nginx spreads them over copies
            assert mallory.post(f"{split.url}/user/login", json=wrong).status_code == 401
        limited = mallory.post(f"{split.url}/user/login", json=wrong)
        assert limited.json()["data"]["error"] == "rate_limited"
        for server in split.copies["user"]:  # each copy counts the other's attempts
            direct = httpx.post(
                f"{server.url}/user/login", json=wrong, headers={"X-Forwarded-For": "127.0.0.2"}
            )
            assert direct.status_code == 429, server.url
        # a spoofed X-Forwarded-For neither frees Mallory nor makes Alice pay for her
        for spoof in ("10.1.2.3", "127.0.0.3"):
            spoofed = mallory.post(
                f"{split.url}/user/login", json=wrong, headers={"X-Forwarded-For": spoof}
            )
            assert spoofed.status_code == 429
        framed = alice.post(
            f"{split.url}/user/login", json=wrong, headers={"X-Forwarded-For": "127.0.0.2"}
        )
        assert framed.status_code == 401, framed.text
        right = {"username": name, "password": PASSWORD}
        assert alice.post(f"{split.url}/user/login", json=right).status_code == 200


def test_nginx_passes_the_request_id_on_and_answers_its_own_errors_in_json(split: Split):
    headers = sign_up_at(split.url)
    order_id = place_order_at(split.url, headers)
    request_id = f"split-{uuid.uuid4().hex}"
    paid = httpx.post(
        f"{split.url}/payment/",
        json={"order_id": order_id},
        headers={**headers, "X-Request-ID": request_id},
    )
    assert paid.headers["X-Request-ID"] == request_id

    def logged_request_ids() -> set[str]:  # a copy writes its INFO lines within 0.2 s
        order_logs = "".join(server.log.read_text() for server in split.copies["order"])
        logged = [json.loads(line) for line in order_logs.splitlines() if line.startswith("{")]
        return {line.get("request_id") for line in logged}

    assert wait_for(lambda: request_id in logged_request_ids(), 2)  # the payment's call

    fresh = httpx.get(f"{split.url}/order/", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert wait_for(lambda: fresh in logged_request_ids(), 2)
    answered = {server.url for server in split.copies["order"] if fresh in server.log.read_text()}
    assert len(answered) == 1  # nginx's id is the one the copy logged

    missing = httpx.get(f"{split.url}/nowhere", headers={"X-Request-ID": request_id})
    assert missing.status_code == 404
    assert missing.json()["data"]["error"] == "not_found"
    assert missing.headers["X-Request-ID"] == request_id
    huge = httpx.post(f"{split.url}/order/", content=b"x" * (2 << 20), headers=headers)
    assert huge.status_code == 413
    assert huge.json()["data"]["error"] == "payload_too_large"


def test_a_payment_copy_killed_mid_burst_leaves_every_order_paid_once(split: Split):
    """30 orders, each paid by a client that retries with its Idempotency-Key; one payment
    copy is SIGKILLed while the provider has charged for it and before it recorded that."""
    victim, survivor = split.copies["payment"]
    headers = sign_up_at(split.url)
    order_ids = [place_order_at(split.url, headers, price="10.00") for _ in range(30)]
    run = uuid.uuid4().hex[:8]
    answers: dict[int, list[int | str]] = defaultdict(list)
    """What each order's client got, try by try: a status, an error slug, or the failure."""

    def pay_until_answered(order_id: int) -> httpx.Response | None:
        keyed = {**headers, "Idempotency-Key": f"burst-{run}-{order_id}"}
        deadline = time.monotonic() + 45
        with httpx.Client(base_url=split.url, timeout=30) as client:
            while time.monotonic() < deadline:
                try:
                    reply = client.post("/payment/", json={"order_id": order_id}, headers=keyed)
                except httpx.TransportError as error:
                    answers[order_id].append(type(error).__name__)
                    continue
                slug = reply.json()["data"].get("error")
                answers[order_id].append(slug or reply.status_code)
                if reply.status_code < 500 and slug != "request_in_progress":
                    return reply
                time.sleep(0.2)  # the copy died under it, or its first try still runs
        return None

    stall = split.ledger / f"stall-{victim.process.pid}"
    with ThreadPoolExecutor(6) as pool:
        paying = [pool.submit(pay_until_answered, order_id) for order_id in order_ids]
        assert wait_for(lambda: sum(future.done() for future in paying) >= 6, 20)
        before = len(ledger_provider.entries(split.ledger))
        stall.touch()
        try:

            def charged_by_victim() -> set[int]:
                return {
                    int(entry["reference"].removeprefix("payment-"))
                    for entry in ledger_provider.entries(split.ledger)[before:]
                    if entry["pid"] == victim.process.pid and entry["kind"] == "charge"
                }

            def victim_stalled() -> bool:  # charged, and waits to record it
                processing = "SELECT id FROM payments WHERE id = ANY(%s) AND status = 'processing'"
                return bool(split.query("payment", processing, list(charged_by_victim())))

            assert wait_for(victim_stalled, 10), "the victim never charged"
            time.sleep(0.3)  # a few more requests reach it and wait
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait(10)
            [[killed_at]] = split.query("payment", "SELECT now() at time zone 'utc'")
        finally:
            stall.unlink()
        # Two minutes pass for what the dead copy left: its reservations
        # (payment_service.service.STRANDED_AFTER), then its claims on the keys
        # (idempotency.ABANDONED_AFTER), aged here as if the kill were minutes ago. Only
        # rows last touched before the kill and still unfinished two seconds later age
        # (the survivor finishes a payment in milliseconds).
        time.sleep(2)
        stranded = split.query(
            "payment",
            "UPDATE payments SET updated_at = updated_at - interval '3 minutes'"
            " WHERE status = 'processing' AND updated_at < %s RETURNING id",
            killed_at,
        )
        assert charged_by_victim() & {payment_id for [payment_id] in stranded}

        def reconciled() -> bool:  # by the survivor, which asks the provider
            [[left]] = split.query(
                "payment",
                "SELECT count(*) FROM payments WHERE id = ANY(%s) AND status = 'processing'",
                [payment_id for [payment_id] in stranded],
            )
            return left == 0

        assert wait_for(reconciled, 15)
        assert any("service_unavailable" in tries for tries in answers.values()), dict(answers)
        assert not all(future.done() for future in paying)  # some keys wait for the dead copy
        split.query(
            "payment",
            "UPDATE idempotency_keys SET created_at = created_at - interval '3 minutes'"
            " WHERE response_status IS NULL AND created_at < %s RETURNING id",
            killed_at,
        )
        replies = [future.result() for future in paying]

    assert [reply and reply.status_code for reply in replies] == [201] * 30, dict(answers)
    # the database: each order one payment that succeeded, none left half done
    rows = split.query(
        "payment",
        "SELECT order_id, id, status FROM payments WHERE order_id = ANY(%s)",
        order_ids,
    )
    assert {status for _, _, status in rows} <= {"succeeded", "failed"}, rows
    succeeded = {order_id: payment_id for order_id, payment_id, s in rows if s == "succeeded"}
    assert sorted(succeeded) == sorted(order_ids)
    assert {reply.json()["data"]["id"] for reply in replies} == set(succeeded.values())
    # the provider: each order charged once, for the payment that succeeded
    charges = [
        int(entry["reference"].removeprefix("payment-"))
        for entry in ledger_provider.entries(split.ledger)
        if entry["kind"] == "charge"
    ]
    payment_of = {payment_id: order_id for order_id, payment_id, _ in rows}
    charged = [payment_of[payment_id] for payment_id in charges if payment_id in payment_of]
    assert sorted(charged) == sorted(order_ids)
    assert all(succeeded[payment_of[p]] == p for p in charges if p in payment_of)

    # the events: every payment.succeeded sent (the dead copy's too), every order paid
    def all_sent() -> bool:
        [[unsent]] = split.query(
            "payment", "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
        )
        return unsent == 0

    assert wait_for(all_sent, 20)
    assert wait_for(
        lambda: all(order_status_at(split.url, headers, oid) == "paid" for oid in order_ids), 20
    )
    assert survivor.process.poll() is None
