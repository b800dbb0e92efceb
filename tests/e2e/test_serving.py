"""Serving as deployed: waitress's limits, slow clients, a proxy, and SIGTERM under load.

Only the SIGTERM under load, which must lose no event, runs on each backend: the others
test waitress and the request limits, which no database takes part in, on SQLite."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, text
from support import PASSWORD, Server, bearer, unique, wait_for

from app.kit.database import Database
from app.runtime.serving import DRAIN_SECONDS, waitress_options
from app.settings import ServingLimits

pytestmark = pytest.mark.e2e


def sign_up(base: str, **headers: str) -> dict[str, str]:
    name = unique("server")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert httpx.post(f"{base}/user/register", json=body).status_code == 201
    login = httpx.post(f"{base}/user/login", json={"username": name, "password": PASSWORD})
    return bearer(login.json()["data"]["token"])


def test_the_limits_are_fit_for_the_internet():
    options = waitress_options(ServingLimits())
    assert options["max_request_body_size"] == 1024 * 1024  # waitress would take 1 GiB
    assert options["connection_limit"] == 1000  # waitress: 100
    assert options["max_request_header_size"] == 8 * 1024
    assert "trusted_proxy" not in options
    behind_nginx = waitress_options(ServingLimits(trusted_proxy="127.0.0.1"))
    assert behind_nginx["trusted_proxy"] == "127.0.0.1"
    assert "x-forwarded-for" in behind_nginx["trusted_proxy_headers"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    server = Server.start(tmp_path_factory.mktemp("served"), via_cli=True)
    yield server
    server.stop()


def test_slow_clients_do_not_lock_out_normal_ones(served: Server):
    """150 clients sending a header line every 2 s (slowloris) while 6 normal requests run."""
    host, port = served.url.removeprefix("http://").split(":")
    slow = []
    stop = threading.Event()
    for _ in range(150):
        connection = socket.create_connection((host, int(port)))
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow.append(connection)

    def trickle() -> None:
        while not stop.wait(2):
            for connection in slow:
                connection.sendall(b"X-Slow: 1\r\n")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(2.5)
        answers = [httpx.get(f"{served.url}/healthz", timeout=5).status_code for _ in range(6)]
    finally:
        stop.set()
        trickler.join(5)
        for connection in slow:
            connection.close()
    assert answers == [200] * 6


def test_oversized_headers_and_bodies_are_refused_by_the_server(served: Server):
    reply = httpx.get(f"{served.url}/healthz", headers={"X-Big": "a" * 9000})
    assert reply.status_code == 431
    assert_server_error(reply, 431, "request_header_fields_too_large")

    def chunks():
        for _ in range(40):
            yield b"x" * 32 * 1024

    reply = httpx.post(f"{served.url}/user/register", content=chunks())
    assert reply.status_code == 413
    assert_server_error(reply, 413, "payload_too_large")


def assert_server_error(reply: httpx.Response, status: int, slug: str) -> None:
    """API.md's envelope, also when waitress answers before the application does."""
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    body = reply.json()
    assert body["code"] == status
    assert body["data"] == {"error": slug}
    assert body["msg"]
    assert reply.headers["X-Request-ID"]


def raw_exchange(server: Server, request: bytes) -> httpx.Response:
    """``request`` sent as it is over a socket, and the answer read until the server closes."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in header_lines]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE", b"GET /healthz HTTP/1.1 extra", b"G\x00T /healthz HTTP/1.1"],
)
def test_a_malformed_request_line_gets_the_json_envelope(served: Server, request_line: bytes):
    reply = raw_exchange(served, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert_server_error(reply, 400, "bad_request")


def test_a_body_over_the_servers_limit_gets_the_json_envelope(served: Server):
    """Declared by Content-Length: refused before the body is read, with the caller's id."""
    reply = raw_exchange(
        served,
        b"POST /user/register HTTP/1.1\r\nHost: x\r\nX-Request-ID: mine-42\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
    )
    assert_server_error(reply, 413, "payload_too_large")
    assert reply.headers["X-Request-ID"] == "mine-42"


def test_serve_logs_where_it_listens(served: Server):
    port = served.url.rsplit(":", 1)[1]

    def messages() -> list[str]:  # INFO lines are written within 0.2 s
        text = served.log.read_text()
        return [json.loads(line)["message"] for line in text.splitlines() if line.startswith("{")]

    assert wait_for(lambda: f"serving on http://127.0.0.1:{port}" in messages(), 2)


def test_a_spoofed_forwarded_for_does_not_escape_the_login_limit(served: Server):
    name = unique()
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    httpx.post(f"{served.url}/user/register", json=body)
    wrong = {"username": name, "password": "wrong-password"}
    statuses = [
        httpx.post(
            f"{served.url}/user/login", json=wrong, headers={"X-Forwarded-For": f"10.0.0.{n}"}
        ).status_code
        for n in range(11)
    ]
    assert statuses == [401] * 10 + [429]


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(tmp_path: Path):
    server = Server.start(tmp_path, via_cli=True, MICROSHOP_TRUSTED_PROXY="127.0.0.1")
    try:
        name = unique()
        body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
        httpx.post(f"{server.url}/user/register", json=body)
        wrong = {"username": name, "password": "wrong-password"}
        for client in ("203.0.113.7", "203.0.113.8"):
            statuses = [
                httpx.post(
                    f"{server.url}/user/login", json=wrong, headers={"X-Forwarded-For": client}
                ).status_code
                for _ in range(10)
            ]
            assert statuses == [401] * 10, client
    finally:
        server.stop()


@contextlib.contextmanager
def connected_at_sigterm(folder: Path) -> Iterator[tuple[Server, socket.socket]]:
    """A server that got SIGTERM after accepting a connection that has sent nothing yet."""
    server = Server.start(folder, via_cli=True)
    host, port = server.url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=20) as connection:
            time.sleep(0.3)  # the server has accepted it
            server.process.send_signal(signal.SIGTERM)
            yield server, connection
    finally:
        server.stop()


def test_a_connection_whose_request_comes_just_after_sigterm_is_answered(tmp_path: Path):
    with connected_at_sigterm(tmp_path) as (server, connection):
        time.sleep(0.3)  # the server is draining
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert server.process.wait(20) == 0


def test_a_connection_that_never_sends_a_request_does_not_hold_up_the_exit(tmp_path: Path):
    with connected_at_sigterm(tmp_path) as (server, connection):
        assert server.process.wait(DRAIN_SECONDS / 2) == 0  # not the whole drain
        assert connection.recv(1) == b""  # closed without an answer: nothing was asked


def test_sigterm_under_load_cuts_off_no_request_and_loses_no_event(
    tmp_path: Path, server_urls: dict[str, str]
):
    server = Server.start(tmp_path, via_cli=True, databases=server_urls)
    headers = sign_up(server.url)
    orders = [
        httpx.post(
            f"{server.url}/order/", json={"product": "pen", "price": 3}, headers=headers
        ).json()["data"]["id"]
        for _ in range(40)
    ]

    def pay(order_id: int) -> object:
        try:
            return httpx.post(
                f"{server.url}/payment/", json={"order_id": order_id}, headers=headers, timeout=30
            )
        except httpx.ConnectError as refused:  # after SIGTERM new connections are refused
            return refused

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(pay, order_id) for order_id in orders]
        assert wait_for(lambda: any(future.done() for future in futures), 30)  # others in flight
        server.process.send_signal(signal.SIGTERM)
        outcomes = [future.result() for future in futures]
    assert server.process.wait(20) == 0
    answered = [o for o in outcomes if isinstance(o, httpx.Response)]
    assert answered, "no request finished before the shutdown"
    assert all(o.status_code == 201 for o in answered), [o.text for o in answered]
    assert all(isinstance(o, httpx.Response | httpx.ConnectError) for o in outcomes)

    restarted = Server.start(tmp_path, via_cli=True, databases=server_urls, init_db=False)
    try:
        paid = [o.json()["data"]["order_id"] for o in answered]

        def settled() -> bool:
            statuses = {
                httpx.get(f"{restarted.url}/order/{order_id}", headers=headers).json()["data"][
                    "status"
                ]
                for order_id in paid
            }
            return statuses == {"paid"}

        assert wait_for(settled, 20)
        database = Database.connect(server_urls["payment"], MetaData())
        try:
            with database.unit_of_work(readonly=True) as session:
                pending = session.scalar(
                    text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                )
        finally:
            database.dispose()
        assert pending == 0
    finally:
        restarted.stop()
