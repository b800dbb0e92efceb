"""The composed application through werkzeug's client, as a WSGI host sees it.

The tests that build their own application (the mounts, a team's services, a database that
cannot be reached) do so on SQLite only: they test the composition, which no engine changes;
the ``client`` fixture's tests run on each backend."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from unittest.mock import ANY

import pytest
from flask import Flask
from support import PASSWORD, bearer, database_urls, make_settings
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from app import __version__, create_application
from app.runtime.composition import Application
from app.settings import ConfigError, ServiceSpec


def assert_envelope(reply, status: int, slug: str | None = None) -> dict:
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.mimetype == "application/json"
    body = reply.get_json()
    assert body["code"] == (0 if status < 400 else status)
    if slug:
        assert body["data"]["error"] == slug
    return body["data"]


def test_root_lists_the_mounted_services(client: Client):
    data = assert_envelope(client.get("/"), 200)
    assert data == {
        "services": {"user": "/user", "order": "/order", "payment": "/payment"},
        "version": __version__,
    }


@pytest.mark.parametrize(
    "path", ["/healthz", "/user/healthz", "/order/healthz", "/payment/healthz"]
)
def test_every_mount_answers_healthz(client: Client, path: str):
    assert_envelope(client.get(path), 200)


def test_readyz_checks_every_service_database(client: Client):
    data = assert_envelope(client.get("/readyz"), 200)
    assert data["services"] == {"user": "ok", "order": "ok", "payment": "ok"}
    for name in ("user", "order", "payment"):
        assert assert_envelope(client.get(f"/{name}/readyz"), 200)["services"] == {name: "ok"}


def test_readyz_names_the_service_whose_database_is_unreachable(tmp_path: Path):
    urls = database_urls("sqlite", tmp_path)
    urls["order"] = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"
    application = create_application(make_settings(tmp_path, urls))
    for name in ("user", "payment"):
        application.services[name].extensions["microshop"].database.create_schema()
    client = Client(application)
    try:
        data = assert_envelope(client.get("/readyz"), 503, "service_unavailable")
        assert data["services"] == {"user": "ok", "order": "unreachable", "payment": "ok"}
        assert "order" in client.get("/readyz").get_json()["msg"]
        assert_envelope(client.get("/order/readyz"), 503, "service_unavailable")
        assert_envelope(client.get("/user/readyz"), 200)
    finally:
        application.dispose()


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/favicon.ico",
        "/user",
        "/user/",
        "/order/nope",
        "/payment/x/y",
        "/users/me",
        "//user//me",
        "/user/../order",
    ],
)
def test_unknown_paths_get_the_json_404_everywhere(client: Client, path: str):
    assert_envelope(client.get(path), 404, "not_found")


def test_unsupported_methods_on_platform_routes_get_405(client: Client):
    reply = client.post("/healthz")
    assert_envelope(reply, 405, "method_not_allowed")
    assert "GET" in reply.headers["Allow"]


def test_request_ids_are_echoed_through_the_dispatcher(client: Client):
    for path in ("/", "/nope", "/user/me", "/order/healthz"):
        reply = client.get(path, headers={"X-Request-ID": "abc-123"})
        assert reply.headers["X-Request-ID"] == "abc-123"


def test_user_flow_through_the_composition(client: Client):
    body = {"username": "carol", "password": PASSWORD, "email": "carol@example.com"}
    assert client.post("/user/register", json=body).status_code == 201
    login = client.post("/user/login", json={"username": "carol", "password": PASSWORD})
    token = login.get_json()["data"]["token"]
    assert (
        assert_envelope(client.get("/user/info", headers=bearer(token)), 200)["username"] == "carol"
    )


def test_the_application_embeds_under_a_prefix(application: Application):
    host_app = Flask("host")

    @host_app.get("/")
    def home() -> str:
        return "the host's own page"

    client = Client(DispatcherMiddleware(host_app, {"/api": application}))
    assert client.get("/").get_data(as_text=True) == "the host's own page"
    services = assert_envelope(client.get("/api/"), 200)["services"]
    assert services == {"user": "/api/user", "order": "/api/order", "payment": "/api/payment"}
    body = {"username": "dora", "password": PASSWORD, "email": "dora@example.com"}
    assert client.post("/api/user/register", json=body).status_code == 201
    login = client.post("/api/user/login", json={"username": "dora", "password": PASSWORD})
    token = login.get_json()["data"]["token"]
    assert (
        assert_envelope(client.get("/api/user/me", headers=bearer(token)), 200)["username"]
        == "dora"
    )
    assert_envelope(client.get("/api/nope"), 404, "not_found")
    headers = bearer(token)
    order = client.post("/api/order/", json={"product": "pen", "price": 5}, headers=headers)
    order_id = order.get_json()["data"]["id"]
    paid = client.post("/api/payment/pay", json={"order_id": order_id}, headers=headers)
    assert paid.status_code == 201
    assert assert_envelope(client.get(f"/api/order/{order_id}", headers=headers), 200) == {
        **order.get_json()["data"],
        "status": "paid",
        "updated_at": ANY,
    }
    assert client.delete(f"/api/order/{order_id}", headers=headers).status_code == 200
    final = assert_envelope(client.get(f"/api/order/{order_id}", headers=headers), 200)
    assert final["status"] == "refunded"


def test_only_the_services_named_are_mounted(tmp_path: Path):
    settings = make_settings(
        tmp_path, database_urls("sqlite", tmp_path), services=(ServiceSpec.parse("order"),)
    )
    application = create_application(settings)
    try:
        client = Client(application)
        assert assert_envelope(client.get("/"), 200)["services"] == {"order": "/order"}
        assert_envelope(client.get("/user/healthz"), 404, "not_found")
        assert_envelope(client.get("/order/healthz"), 200)
    finally:
        application.dispose()


@pytest.fixture
def team_application(tmp_path: Path):
    services = (
        ServiceSpec.parse("user"),
        ServiceSpec.parse("reviews=acme_reviews:create_app"),
        ServiceSpec.parse("legacy=acme_reviews:create_legacy"),
    )
    urls = {**database_urls("sqlite", tmp_path), "reviews": f"sqlite:///{tmp_path / 'r.db'}"}
    application = create_application(make_settings(tmp_path, urls, services=services))
    for name in ("user", "reviews"):
        application.services[name].extensions["microshop"].database.create_schema()
    yield application
    application.dispose()


def test_a_team_mounts_its_own_services(team_application: Application):
    client = Client(team_application)
    assert assert_envelope(client.get("/reviews/"), 200) == {"items": []}
    assert client.get("/legacy/anything").get_data(as_text=True) == "legacy says hi"
    ready = assert_envelope(client.get("/readyz"), 200)["services"]
    assert ready == {"user": "ok", "reviews": "ok", "legacy": "ok"}


def test_an_unexpected_error_is_a_500_envelope_without_internals(
    team_application: Application, caplog: pytest.LogCaptureFixture
):
    client = Client(team_application)
    with caplog.at_level(logging.ERROR):
        reply = client.get("/reviews/broken", headers={"X-Request-ID": "req-500"})
    assert_envelope(reply, 500, "internal_error")
    assert "hunter2" not in reply.get_data(as_text=True)
    assert "Traceback" not in reply.get_data(as_text=True)
    logged = [record for record in caplog.records if "req-500" in record.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


def test_a_service_that_cannot_be_imported_is_a_config_error(tmp_path: Path):
    settings = make_settings(
        tmp_path, {}, services=(ServiceSpec.parse("shop=no_such_module:create_app"),)
    )
    with pytest.raises(ConfigError, match="no_such_module"):
        create_application(settings)
    settings = make_settings(tmp_path, {}, services=(ServiceSpec.parse("shop=acme_reviews:nope"),))
    with pytest.raises(ConfigError, match="nope"):
        create_application(settings)


def test_readyz_answers_503_in_time_when_a_database_host_never_answers(tmp_path: Path):
    """A listening socket that never speaks: the connection opens, the server is silent."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        urls = database_urls("sqlite", tmp_path)
        urls["payment"] = f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/x"
        application = create_application(make_settings(tmp_path, urls))
        try:
            started = time.monotonic()
            reply = Client(application).get("/payment/readyz")
            assert_envelope(reply, 503, "service_unavailable")
            assert time.monotonic() - started < 15
        finally:
            application.dispose()
