"""Metrics at ``/metrics`` and one JSON log line per request, with no secrets in any log.

The ``application`` fixture's tests and the real server run on each backend; those that
build an application of their own (one service, a database that cannot be reached, a second
registry, a team's service) test the metrics and the logs on SQLite only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from support import (
    PASSWORD,
    Server,
    bearer,
    database_urls,
    free_port,
    make_settings,
    unique,
)
from werkzeug.test import Client

from app.kit.database import utcnow
from app.kit.service import parts_of
from app.runtime.batched_log import BatchingStreamHandler
from app.runtime.composition import Application, create_application
from app.runtime.observability import (
    QUEUE_WARNING_SECONDS,
    UNMATCHED,
    WAITRESS_QUEUE,
    AtMostEvery,
    JsonFormatter,
    configure_logging,
)
from app.settings import ServiceSpec

REQUESTS = "microshop_http_requests"
LATENCY = "microshop_http_request_duration_seconds"
BACKLOG = "microshop_outbox_backlog"
FAILURES = "microshop_outbox_delivery_failures"
ACCESS_FIELDS = {"time", "level", "service", "method", "route", "status", "duration_ms"}


def scrape(client: Client) -> dict[str, list[Sample]]:
    """``GET /metrics``, parsed as Prometheus does: each family's samples by family name."""
    reply = client.get("/metrics")
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = reply.get_data(as_text=True)
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


def request_series(families: dict[str, list[Sample]]) -> list[dict[str, str]]:
    return [s.labels for s in families[REQUESTS] if s.name == f"{REQUESTS}_total"]


def signed_up(client: Client) -> dict[str, Any]:
    """A new user's id and tokens."""
    name = unique("watcher")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    registered = client.post("/user/register", json=body)
    assert registered.status_code == 201
    login = client.post("/user/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200
    return {"id": registered.get_json()["data"]["id"], **login.get_json()["data"]}


def test_metrics_count_requests_by_route_template_and_status(client: Client):
    account = signed_up(client)
    headers = bearer(account["access_token"])
    order = client.post("/order/", json={"product": "pen", "price": "5"}, headers=headers)
    order_id = order.get_json()["data"]["id"]
    assert client.post("/payment/", json={"order_id": order_id}, headers=headers).status_code == 201
    assert client.get(f"/order/{order_id}", headers=headers).status_code == 200
    assert client.get(f"/order/{order_id + 1000}", headers=headers).status_code == 404
    invalid = client.post("/order/", json={"product": "pen", "price": -1}, headers=headers)
    assert invalid.status_code == 422
    assert client.get("/nope").status_code == 404

    families = scrape(client)
    requests = families[REQUESTS]
    total = f"{REQUESTS}_total"
    expected = [
        ("user", "/user/register", "POST", "201"),
        ("user", "/user/login", "POST", "200"),
        ("order", "/order/", "POST", "201"),
        ("order", "/order/", "POST", "422"),
        ("payment", "/payment/", "POST", "201"),
        ("order", "/order/<id:order_id>", "GET", "200"),
        ("order", "/order/<id:order_id>", "GET", "404"),
        ("order", "/order/internal/orders/<id:order_id>", "GET", "200"),  # payment asks order
        ("root", UNMATCHED, "GET", "404"),
    ]
    for service, route, method, status in expected:
        labels = {"service": service, "route": route, "method": method, "status": status}
        assert value(requests, total, **labels) == 1, labels
        latency = families[LATENCY]
        assert value(latency, f"{LATENCY}_count", **labels) == 1, labels
        assert value(latency, f"{LATENCY}_sum", **labels) > 0
        assert value(latency, f"{LATENCY}_bucket", **labels, le="+Inf") == 1
    for labels in request_series(families):
        assert str(order_id) not in labels["route"]
        assert labels["route"] == UNMATCHED or labels["route"].startswith(("/", "<"))
    assert {"process_cpu_seconds", "process_resident_memory_bytes"} & set(families)
    assert "python_info" in families


def test_unknown_paths_add_at_most_one_route_label(client: Client):
    client.get("/healthz")
    before = {labels["route"] for labels in request_series(scrape(client))}
    for number in range(100):
        prefix = ("", "/user", "/order", "/payment")[number % 4]
        assert client.get(f"{prefix}/scan-{number}/wp-login.php").status_code == 404
    after = {labels["route"] for labels in request_series(scrape(client))}
    assert len(after - before - {"/metrics"}) <= 1
    assert after - before <= {UNMATCHED, "/metrics"}
    unmatched = [s for s in request_series(scrape(client)) if s["route"] == UNMATCHED]
    assert len(unmatched) <= 4  # one series per service at most


def test_outbox_backlog_is_zero_per_service_after_in_process_delivery(client: Client):
    account = signed_up(client)
    headers = bearer(account["access_token"])
    order = client.post("/order/", json={"product": "pen", "price": 5}, headers=headers)
    order_id = order.get_json()["data"]["id"]
    assert client.post("/payment/", json={"order_id": order_id}, headers=headers).status_code == 201
    assert client.delete(f"/order/{order_id}", headers=headers).status_code == 200
    backlog = scrape(client)[BACKLOG]
    for service in ("user", "order", "payment"):
        assert value(backlog, BACKLOG, service=service) == 0
    assert not [s for s in scrape(client)[FAILURES] if s.name == f"{FAILURES}_total"]


def test_failing_events_and_dead_letters_are_counted_per_service(application: Application):
    order = parts_of(application.services["order"])
    failures = order.outbox.failures
    later = utcnow() + timedelta(hours=1)  # not due: the sweeper must not retry it meanwhile
    with order.database.unit_of_work() as session:
        for n, dead in enumerate((None, utcnow(), utcnow())):
            session.execute(
                failures.insert().values(
                    event_id=f"{n:032d}",
                    topic="payment.succeeded",
                    revision=1,
                    payload="{}",
                    attempts=1,
                    last_error="boom",
                    failed_at=utcnow(),
                    next_attempt_at=None if dead else later,
                    dead_at=dead,
                )
            )
    families = scrape(Client(application))
    assert (
        value(families["microshop_events_failing"], "microshop_events_failing", service="order")
        == 1
    )
    assert value(families["microshop_dead_letters"], "microshop_dead_letters", service="order") == 2
    assert value(families["microshop_dead_letters"], "microshop_dead_letters", service="user") == 0


@pytest.fixture
def lonely_user_service(tmp_path: Path) -> Iterator[Application]:
    """Only the user service here; the payment service's URL leads nowhere."""
    settings = make_settings(
        tmp_path,
        database_urls("sqlite", tmp_path),
        services=(ServiceSpec.parse("user"),),
        service_urls={"payment": f"http://127.0.0.1:{free_port()}"},
        outbox_sweep_seconds=0,  # no sweeper: only the delivery right after the commit
    )
    application = create_application(settings)
    parts_of(application.services["user"]).database.create_schema()
    yield application
    application.dispose()


def test_a_failed_delivery_counts_and_stays_in_the_backlog(lonely_user_service: Application):
    client = Client(lonely_user_service)
    account = signed_up(client)
    logout = client.post("/user/logout", headers=bearer(account["access_token"]))
    assert logout.status_code == 200  # the event waits in the outbox for the payment service
    families = scrape(client)
    failures = value(families[FAILURES], f"{FAILURES}_total", service="user", subscriber="payment")
    assert failures == 1
    assert value(families[BACKLOG], BACKLOG, service="user") == 1


def test_an_unreachable_database_does_not_break_the_scrape(tmp_path: Path):
    urls = database_urls("sqlite", tmp_path)
    urls["order"] = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"
    application = create_application(make_settings(tmp_path, urls))
    try:
        for name in ("user", "payment"):
            parts_of(application.services[name]).database.create_schema()
        families = scrape(Client(application))
        backlog = families[BACKLOG]
        assert value(backlog, BACKLOG, service="user") == 0
        assert value(backlog, BACKLOG, service="payment") == 0
        assert value(backlog, BACKLOG, service="order") is None
        assert REQUESTS in families
    finally:
        application.dispose()


def test_each_application_has_its_own_registry(application: Application, tmp_path: Path):
    other = create_application(make_settings(tmp_path, database_urls("sqlite", tmp_path)))
    try:
        assert other.metrics.registry is not application.metrics.registry
        Client(other).get("/healthz")
        series = request_series(scrape(Client(application)))
        assert {"service": "root", "route": "/healthz", "method": "GET", "status": "200"} not in (
            series
        )
    finally:
        other.dispose()


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """What the process's JSON handler would write, from every logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def access_lines(text: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [entry for entry in entries if entry["logger"] == "microshop.access"]


def test_every_request_is_one_json_line_and_no_log_holds_a_secret(
    client: Client, caplog: pytest.LogCaptureFixture
):
    name = unique("logged")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    with caplog.at_level(logging.DEBUG), json_log() as stream:
        registered = client.post("/user/register", json=body, headers={"X-Request-ID": "r-reg"})
        user_id = registered.get_json()["data"]["id"]
        login = client.post(
            "/user/login",
            json={"username": name, "password": PASSWORD},
            headers={"X-Request-ID": "r-login"},
        )
        tokens = login.get_json()["data"]
        headers = bearer(tokens["access_token"])
        client.get("/user/me", headers={**headers, "X-Request-ID": "r-me"})
        order = client.post(
            "/order/",
            json={"product": "pen", "price": "19.99"},
            headers={**headers, "X-Request-ID": "r-order"},
        )
        paid = client.post(
            "/payment/",
            json={"order_id": order.get_json()["data"]["id"], "payment_method": "tok_visa"},
            headers={**headers, "X-Request-ID": "r-pay"},
        )
        assert paid.status_code == 201
        logout = client.post(
            "/user/logout",
            json={"refresh_token": tokens["refresh_token"]},
            headers={**headers, "X-Request-ID": "r-logout"},
        )
        assert logout.status_code == 200
    text = stream.getvalue()
    lines = access_lines(text)
    for entry in lines:  # the outer requests and the calls between services alike
        assert set(entry) >= ACCESS_FIELDS, entry
        assert datetime.fromisoformat(entry["time"]).tzinfo == UTC
        assert isinstance(entry["duration_ms"], float | int)
    sent = [
        ("r-reg", "POST", "/user/register", 201, None),
        ("r-login", "POST", "/user/login", 200, None),
        ("r-me", "GET", "/user/me", 200, user_id),
        ("r-order", "POST", "/order/", 201, user_id),
        ("r-pay", "POST", "/payment/", 201, user_id),
        ("r-logout", "POST", "/user/logout", 200, user_id),
    ]
    for request_id, method, route, status, user in sent:
        mine = [e for e in lines if e["request_id"] == request_id and e["route"] == route]
        assert len(mine) == 1, (request_id, mine)
        assert mine[0]["method"] == method
        assert mine[0]["status"] == status
        assert mine[0]["level"] == "INFO"
        assert mine[0].get("user_id") == user
    secrets = [PASSWORD, tokens["access_token"], tokens["refresh_token"], "tok_visa"]
    for secret in secrets:
        assert secret not in text
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in json.dumps(record.__dict__, default=str)


def test_an_unexpected_error_is_a_json_line_with_traceback_not_sent(tmp_path: Path):
    services = (ServiceSpec.parse("reviews=acme_reviews:create_app"),)
    urls = {"reviews": f"sqlite:///{tmp_path / 'r.db'}"}
    application = create_application(make_settings(tmp_path, urls, services=services))
    try:
        client = Client(application)
        with json_log() as stream:
            reply = client.get("/reviews/broken", headers={"X-Request-ID": "r-500"})
        assert reply.status_code == 500
        assert "Traceback" not in reply.get_data(as_text=True)
        entries = [json.loads(line) for line in stream.getvalue().splitlines()]
        (error,) = [e for e in entries if e["logger"] == "microshop.errors"]
        assert error["level"] == "ERROR"
        assert error["request_id"] == "r-500"
        assert error["service"] == "reviews"
        assert "RuntimeError" in error["traceback"]
        assert error["traceback"].startswith("Traceback")
        (access,) = access_lines(stream.getvalue())
        assert access["status"] == 500
        assert access["route"] == "/reviews/broken"
        assert access["request_id"] == "r-500"
    finally:
        application.dispose()


def test_logging_is_configured_once_per_process():
    """Without a host's set-up, the root logger gets one JSON stderr handler, however many
    applications the process builds; with one, microshop leaves the handlers alone."""
    root = logging.getLogger()
    saved = root.handlers
    root.handlers = []
    try:
        for _ in range(3):
            configure_logging()
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0], BatchingStreamHandler)
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert logging.getLogger("microshop.access").isEnabledFor(logging.INFO)
    finally:
        root.handlers = saved
    configure_logging()
    assert root.handlers is saved


@pytest.mark.e2e
def test_a_real_server_logs_json_lines_without_secrets(tmp_path: Path, server_urls: dict[str, str]):
    """On each backend: a driver's own warnings would break the JSON lines."""
    server = Server.start(tmp_path, databases=server_urls)
    try:
        name = unique("served")
        body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
        assert httpx.post(f"{server.url}/user/register", json=body).status_code == 201
        login = httpx.post(
            f"{server.url}/user/login",
            json={"username": name, "password": PASSWORD},
            headers={"X-Request-ID": "e2e-login"},
        )
        assert login.status_code == 200
        tokens = login.json()["data"]
        me = httpx.get(f"{server.url}/user/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        scraped = httpx.get(f"{server.url}/metrics")
        assert scraped.headers["content-type"] == CONTENT_TYPE_LATEST
        assert 'route="/user/login"' in scraped.text
    finally:
        server.stop()
    text = server.log.read_text()
    lines = access_lines(text)  # every line of the log is JSON: waitress's too
    (logged_in,) = [e for e in lines if e["request_id"] == "e2e-login"]
    assert logged_in["route"] == "/user/login"
    assert logged_in["status"] == 200
    assert [e["user_id"] for e in lines if e["route"] == "/user/me"] == [me.json()["data"]["id"]]
    for secret in (PASSWORD, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text


def test_waitress_queue_warnings_pass_at_most_once_a_minute():
    now = [1000.0]
    gate = AtMostEvery(QUEUE_WARNING_SECONDS, clock=lambda: now[0])
    record = logging.LogRecord(
        WAITRESS_QUEUE, logging.WARNING, __file__, 1, "Task queue depth is %d", (3,), None
    )
    passed = []
    for seconds in (0, 1, 30, 59.9, 60, 61, 119.9, 120.5):
        now[0] = 1000.0 + seconds
        passed.append(gate.filter(record))
    assert passed == [True, False, False, False, True, False, False, True]


def test_a_lines_time_is_utc_to_the_millisecond_across_seconds():
    """The formatter makes a second's text once: lines of the next second, and of one
    logged late by another thread, still carry their own time."""
    formatter = JsonFormatter()
    for created in (1796676250.9996, 1796676251.0004, 1796676250.5, 1796676250.5):
        record = logging.LogRecord("microshop.test", logging.INFO, __file__, 1, "hi", None, None)
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(record))["time"] == expected.replace("+00:00", "Z")


def test_a_line_holds_an_integer_too_large_for_orjson():
    record = logging.LogRecord("microshop.test", logging.INFO, __file__, 1, "hi", None, None)
    record.user_id = 2**70
    assert json.loads(JsonFormatter().format(record))["user_id"] == 2**70
