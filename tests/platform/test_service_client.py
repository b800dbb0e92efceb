"""The service client: a mounted service through its WSGI callable, another one over HTTP
with timeouts, pooled connections and a retry for safe requests, 503 when unreachable.

The peer is on SQLite only: what is tested is the client's HTTP, not the peer's database."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from flask import Flask, Response, g, request
from support import (
    PASSWORD,
    SECRET,
    Server,
    access_claims,
    bearer,
    forge,
    free_port,
    make_settings,
    unique,
)
from werkzeug.serving import WSGIRequestHandler, make_server

import order_service
from app.kit.auth import SERVICE_AUDIENCE, init_jwt, service_required
from app.kit.errors import ServiceUnavailable
from app.kit.peers import Reply
from app.kit.responses import ok
from app.kit.service import parts_of
from app.kit.web import init_web
from app.runtime.service_client import TIMEOUT, ServiceClient
from app.settings import Settings


def echo_app(settings: Settings) -> Flask:
    """A service whose internal route tells what reached it."""
    app = Flask(__name__)
    init_web(app)
    init_jwt(app, settings)

    @app.route("/internal/echo", methods=["GET", "POST"])
    @service_required
    def echo() -> Response:
        return ok(
            {
                "caller": g.calling_service,
                "request_id": g.request_id,
                "method": request.method,
                "script_root": request.script_root,
                "path": request.path,
                "body": request.get_json(silent=True),
            }
        )

    return app


class QuietHandler(WSGIRequestHandler):
    def log(self, *args: Any) -> None:
        pass


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """``app`` over HTTP from a thread (one connection at a time, no keep-alive)."""
    server = make_server("127.0.0.1", port or 0, app, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


class Scripted:
    """A WSGI app answering the given statuses in turn (then 200), recording each request."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses)
        self.seen: list[dict[str, str | None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status = self.statuses.pop(0) if self.statuses else 200
        self.seen.append(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "authorization": environ.get("HTTP_AUTHORIZATION"),
                "request_id": environ.get("HTTP_X_REQUEST_ID"),
            }
        )
        body = json.dumps(
            {"code": 0 if status < 400 else status, "msg": "-", "data": {"try": len(self.seen)}}
        ).encode()
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


@pytest.fixture
def make_peers(tmp_path: Path) -> Iterator[Any]:
    made: list[ServiceClient] = []

    def make(mounted: dict[str, Any] | None = None, **service_urls: str) -> ServiceClient:
        settings = make_settings(tmp_path, {}, service_urls=service_urls)
        made.append(ServiceClient(settings, mounted or {}))
        return made[-1]

    yield make
    for peers in made:
        peers.close()


# --- in one process ---------------------------------------------------------------------


def test_a_mounted_service_is_called_through_its_wsgi_callable_without_a_socket(
    make_peers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings = make_settings(tmp_path, {})
    peers = make_peers({"order": echo_app(settings)})

    def no_socket(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a call to a mounted service opened a socket")

    monkeypatch.setattr(socket.socket, "connect", no_socket)
    monkeypatch.setattr(socket, "create_connection", no_socket)

    reply = peers.call("order", "GET", "/internal/echo", caller="payment")
    assert reply.status == 200
    assert reply.data["caller"] == "payment"  # the service token was accepted
    assert reply.data["method"] == "GET"
    assert reply.data["script_root"] == "/order"  # as if mounted by the dispatcher
    assert reply.data["path"] == "/internal/echo"

    reply = peers.call("order", "POST", "/internal/echo", caller="payment", json_body={"n": 1})
    assert reply.status == 200
    assert reply.data["body"] == {"n": 1}
    assert peers._clients == {}  # no HTTP client was ever made


def test_a_mounted_service_hears_the_callers_request_id(make_peers, tmp_path: Path):
    settings = make_settings(tmp_path, {})
    peers = make_peers({"order": echo_app(settings)})
    caller = Flask(__name__)
    init_web(caller)

    with caller.test_request_context("/pay", headers={"X-Request-ID": "req-42"}):
        caller.preprocess_request()  # sets g.request_id from the header
        assert g.request_id == "req-42"
        reply = peers.call("order", "GET", "/internal/echo", caller="payment")
    assert reply.data["request_id"] == "req-42"

    with caller.test_request_context("/pay"):
        g.request_id = "set-by-hand"
        reply = peers.call("order", "GET", "/internal/echo", caller="payment")
    assert reply.data["request_id"] == "set-by-hand"

    reply = peers.call("order", "GET", "/internal/echo", caller="payment")  # outside a request
    assert reply.data["request_id"] not in {"", "req-42", "set-by-hand"}  # the callee made one


def test_a_mounted_service_refuses_a_call_without_a_service_token(tmp_path: Path):
    app = echo_app(make_settings(tmp_path, {}))
    client = app.test_client()
    assert client.get("/internal/echo").status_code == 401
    user = client.get("/internal/echo", headers=bearer(forge(access_claims(1))))
    assert user.status_code == 401
    assert user.get_json()["data"]["error"] == "invalid_token"


def test_the_mounted_order_service_answers_its_internal_route_in_process(settings: Settings):
    app = order_service.create_app(settings)
    database = parts_of(app).database
    database.create_schema()
    peers = ServiceClient(settings, {"order": app})
    try:
        placed = app.test_client().post(
            "/",
            json={"product": "pen", "price": "2.50", "quantity": 3},
            headers=bearer(forge(access_claims(7))),
        )
        assert placed.status_code == 201, placed.get_data(as_text=True)
        order_id = placed.get_json()["data"]["id"]

        reply = peers.call("order", "GET", f"/internal/orders/{order_id}", caller="payment")
        assert reply == Reply(
            200,
            {
                "id": order_id,
                "userid": 7,
                "amount_minor": 750,
                "currency": "USD",
                "status": "pending",
            },
        )
        missing = peers.call("order", "GET", "/internal/orders/999999", caller="payment")
        assert missing.status == 404
        assert missing.data["error"] == "not_found"
    finally:
        peers.close()
        database.dispose()


def test_a_mounted_service_is_preferred_to_its_url(make_peers, tmp_path: Path):
    settings = make_settings(tmp_path, {})
    peers = make_peers({"order": echo_app(settings)}, order=f"http://127.0.0.1:{free_port()}")
    assert peers.urls == {}
    assert peers.call("order", "GET", "/internal/echo", caller="payment").status == 200


def test_a_service_neither_mounted_nor_configured_is_unavailable(make_peers):
    peers = make_peers({}, order="http://127.0.0.1:9")
    assert (set(peers.mounted), set(peers.urls)) == (set(), {"order"})
    with pytest.raises(ServiceUnavailable) as raised:
        peers.call("reviews", "GET", "/internal/anything", caller="payment")
    assert raised.value.status == 503
    assert raised.value.slug == "service_unavailable"
    assert "reviews" in raised.value.message


# --- over HTTP, against a real waitress process -----------------------------------------


@pytest.fixture(scope="module")
def order_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict]]:
    """A production microshop process, and an order placed in it."""
    server = Server.start(tmp_path_factory.mktemp("peer"))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            username = unique()
            registered = http.post(
                "/user/register",
                json={
                    "username": username,
                    "password": PASSWORD,
                    "email": f"{username}@example.com",
                },
            )
            assert registered.status_code == 201, registered.text
            login = http.post("/user/login", json={"username": username, "password": PASSWORD})
            token = login.json()["data"]["access_token"]
            placed = http.post(
                "/order/",
                json={"product": "pen", "price": "19.99", "quantity": 2},
                headers=bearer(token),
            )
            assert placed.status_code == 201, placed.text
        yield server, placed.json()["data"]
    finally:
        server.stop()


def test_a_service_by_url_is_called_over_http(make_peers, order_server):
    server, order = order_server
    peers = make_peers({}, order=server.url)

    reply = peers.call("order", "GET", f"/internal/orders/{order['id']}", caller="payment")
    assert reply == Reply(
        200,
        {
            "id": order["id"],
            "userid": order["userid"],
            "amount_minor": 3998,
            "currency": "USD",
            "status": "pending",
        },
    )


def test_a_missing_order_over_http_is_a_404(make_peers, order_server):
    server, _order = order_server
    peers = make_peers({}, order=server.url)
    reply = peers.call("order", "GET", f"/internal/orders/{2**31 - 1}", caller="payment")
    assert reply.status == 404
    assert reply.data["error"] == "not_found"


def test_calls_over_http_share_one_client_and_reuse_its_connection(make_peers, order_server):
    server, order = order_server
    peers = make_peers({}, order=server.url)
    local_addresses = []

    def remember(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        local_addresses.append(stream.get_extra_info("client_addr"))

    client = peers._client("order")
    client.event_hooks["response"].append(remember)
    for _ in range(3):
        reply = peers.call("order", "GET", f"/internal/orders/{order['id']}", caller="payment")
        assert reply.status == 200

    assert list(peers._clients) == ["order"]
    assert peers._client("order") is client
    assert len(local_addresses) == 3
    assert len(set(local_addresses)) == 1  # one kept-alive connection for all three calls
    assert client.timeout == TIMEOUT
    assert TIMEOUT.connect is not None
    assert TIMEOUT.read is not None

    peers.close()
    assert client.is_closed
    assert peers._clients == {}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_service_nobody_listens_for_is_unavailable_at_once(make_peers, method: str):
    peers = make_peers({}, order=f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(ServiceUnavailable) as raised:
        peers.call("order", method, "/internal/orders/1", caller="payment", json_body=None)
    elapsed = time.monotonic() - start
    assert elapsed < 3
    assert raised.value.status == 503
    assert "order" in raised.value.message


def test_a_get_is_retried_after_a_503(make_peers):
    app = Scripted(503)
    with serving(app) as url:
        peers = make_peers({}, order=url)
        reply = peers.call("order", "GET", "/internal/orders/1", caller="payment")
        peers.close()
    assert reply == Reply(200, {"try": 2})
    assert [seen["method"] for seen in app.seen] == ["GET", "GET"]
    assert all(seen["path"] == "/order/internal/orders/1" for seen in app.seen)


def test_a_get_that_keeps_failing_is_tried_three_times_then_unavailable(make_peers):
    app = Scripted(503, 502, 504, 503)
    with serving(app) as url:
        peers = make_peers({}, order=url)
        with pytest.raises(ServiceUnavailable):
            peers.call("order", "GET", "/internal/orders/1", caller="payment")
        peers.close()
    assert len(app.seen) == 3


def test_a_post_is_not_retried(make_peers):
    app = Scripted(503)
    with serving(app) as url:
        peers = make_peers({}, order=url)
        with pytest.raises(ServiceUnavailable):
            peers.call("order", "POST", "/internal/events", caller="payment", json_body={})
        peers.close()
    assert [seen["method"] for seen in app.seen] == ["POST"]


def test_a_get_answered_500_is_not_retried(make_peers):
    app = Scripted(500)
    with serving(app) as url:
        peers = make_peers({}, order=url)
        reply = peers.call("order", "GET", "/internal/orders/1", caller="payment")
        peers.close()
    assert reply.status == 500
    assert len(app.seen) == 1


def test_a_call_over_http_carries_a_service_token_and_the_request_id(make_peers):
    app = Scripted()
    caller = Flask(__name__)
    init_web(caller)
    with serving(app) as url:
        peers = make_peers({}, order=url)
        with caller.test_request_context("/pay"):
            g.request_id = "req-over-http"
            peers.call("order", "GET", "/internal/orders/1", caller="payment")
        peers.call("order", "GET", "/internal/orders/1", caller="payment")
        peers.close()

    inside, outside = app.seen
    assert inside["request_id"] == "req-over-http"
    assert outside["request_id"] is None
    scheme, _, token = inside["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=SERVICE_AUDIENCE)
    assert claims["sub"] == "payment"
    assert claims["type"] == "service"
    assert claims["exp"] - claims["iat"] <= 60


def test_an_answer_that_is_not_the_json_envelope_is_unavailable(make_peers):
    def html(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "6")])
        return [b"<html>"]

    with serving(html) as url:
        peers = make_peers({}, order=url)
        with pytest.raises(ServiceUnavailable, match="not JSON"):
            peers.call("order", "GET", "/internal/orders/1", caller="payment")
        peers.close()
