"""A production process started before ``microshop migrate``: every request that needs a
database answers 503 naming the missing schema, each background job says so in one
warning line (again only with back-off, never a traceback), and once the operator
migrates, everything works without a restart."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support import (
    BIN,
    PASSWORD,
    ROOT,
    SERVICES,
    HttpTransport,
    Reply,
    Server,
    WsgiTransport,
    access_claims,
    assert_error,
    bearer,
    database_urls,
    forge,
    free_port,
    migrate,
    server_environment,
    unique,
    wait_for,
)
from werkzeug.test import Client

from app.runtime.background import WARN_AGAIN_AFTER
from app.runtime.composition import create_application
from app.settings import Settings

pytestmark = pytest.mark.e2e

JOBS = {
    "outbox-user",
    "outbox-order",
    "outbox-payment",
    "deny-list-order",
    "deny-list-payment",
}
"""Background jobs of a process that serves the three services (a service may add chores)."""
QUIET_SECONDS = 3.0
"""Long enough for every job to have failed several times (the sweepers every 2 s)."""
LOG_LIMIT = 12_000
"""Bytes a process may log while unmigrated in these tests: its start, a line per request
and a warning per job. Before the fix, it logged 21 KB of tracebacks in 8 s and growing."""


def requests_that_need_a_database() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(service whose schema is missing, method, path, keyword arguments)."""
    token = bearer(forge(access_claims(1)))
    name = unique("early")
    account = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    return [
        ("user", "POST", "/user/register", {"json": account}),
        ("user", "POST", "/user/login", {"json": {"username": name, "password": PASSWORD}}),
        ("user", "GET", "/user/me", {"headers": token}),
        ("order", "POST", "/order/", {"json": {"product": "pen", "price": 1}, "headers": token}),
        ("order", "GET", "/order/1", {"headers": token}),
        ("order", "DELETE", "/order/1", {"headers": token}),
        ("order", "GET", "/order/", {"headers": token}),
        ("payment", "GET", "/payment/", {"headers": token}),
        ("payment", "GET", "/payment/1", {"headers": token}),
    ]


def assert_schema_missing(reply: Reply, service: str) -> None:
    data = assert_error(reply, 503, "service_unavailable")
    assert reply.json["msg"] == f"{service} database has no schema yet: run `microshop migrate`"
    assert data["services"] == {service: "schema_missing"}


def assert_every_request_is_refused(request: Callable[..., Reply]) -> None:
    for service, method, path, kwargs in requests_that_need_a_database():
        reply = request(method, path, **kwargs)
        assert reply.status_code == 503, (method, path, reply.text)
        assert_schema_missing(reply, service)
    ready = request("GET", "/readyz")
    assert_error(ready, 503, "service_unavailable")
    assert ready.json["data"]["services"] == dict.fromkeys(SERVICES, "schema_missing")


def assert_the_shop_works(request: Callable[..., Reply]) -> None:
    """Sign up, order, pay: the order ends paid (the payment's event was delivered)."""
    assert request("GET", "/readyz").status_code == 200
    name = unique("late")
    account = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert request("POST", "/user/register", json=account).status_code == 201
    login = request("POST", "/user/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    headers = bearer(login.json["data"]["access_token"])
    order = request("POST", "/order/", json={"product": "pen", "price": 2}, headers=headers)
    assert order.status_code == 201, order.text
    order_id = order.json["data"]["id"]
    paid = request("POST", "/payment/", json={"order_id": order_id}, headers=headers)
    assert paid.status_code == 201, paid.text
    assert wait_for(
        lambda: (
            request("GET", f"/order/{order_id}", headers=headers).json["data"]["status"] == "paid"
        ),
        timeout=10,
    )


def assert_one_warning_per_job_with_back_off(warnings: dict[str, list[float]]) -> None:
    """Each job warned, and never twice within ``WARN_AGAIN_AFTER`` seconds."""
    assert set(warnings) >= JOBS
    for job, times in warnings.items():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= WARN_AGAIN_AFTER - 0.5 for gap in gaps), (job, gaps)


# In-process: the composed application, as an embedding host runs it.


def test_an_unmigrated_application_answers_503_and_warns_once_per_job(
    settings: Settings, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO):
        application = create_application(settings)
        try:
            transport = WsgiTransport(Client(application), on_close=lambda: None)
            assert_every_request_is_refused(transport.request)
            time.sleep(QUIET_SECONDS)
            records = [r for r in caplog.records if r.name.startswith("microshop")]
            assert not [r for r in records if r.exc_info or r.exc_text]
            warnings: dict[str, list[float]] = defaultdict(list)
            for record in records:
                if record.name == "microshop.background":
                    job, _, reason = record.getMessage().partition(" cannot run: ")
                    assert record.levelno == logging.WARNING
                    assert "database has no schema yet: run `microshop migrate`" in reason
                    warnings[job].append(record.created)
            assert_one_warning_per_job_with_back_off(warnings)

            migrate(settings)  # as `microshop migrate` does, from another process

            assert_the_shop_works(transport.request)
            assert wait_for(
                lambda: (
                    {
                        r.getMessage().removesuffix(" works again")
                        for r in caplog.records
                        if r.getMessage().endswith(" works again")
                    }
                    == set(warnings)
                ),
                timeout=10,
            )
        finally:
            application.dispose()


# A real production process: `microshop serve` and `waitress-serve wsgi:application`.


@pytest.fixture(params=["microshop serve", "waitress-serve"])
def unmigrated_server(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[Server]:
    """A production server on fresh databases of ``backend``: nobody ran ``migrate``."""
    urls = database_urls(backend, tmp_path)
    env = server_environment(
        tmp_path,
        **{f"MICROSHOP_{name.upper()}_DATABASE_URL": url for name, url in urls.items()},
    )
    port = free_port()
    command = (
        [BIN / "microshop", "serve", f"--port={port}"]
        if request.param == "microshop serve"
        else [BIN / "waitress-serve", f"--listen=127.0.0.1:{port}", "wsgi:application"]
    )
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", env, log)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def logged_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_an_unmigrated_server_answers_503_logs_little_and_works_once_migrated(
    unmigrated_server: Server,
):
    server = unmigrated_server
    transport = HttpTransport(server.url)
    try:
        assert_every_request_is_refused(transport.request)
        time.sleep(QUIET_SECONDS)
        text = server.log.read_text()
        assert "Traceback" not in text
        assert len(text.encode()) < LOG_LIMIT, text
        warnings: dict[str, list[float]] = defaultdict(list)
        for line in logged_lines(server):
            assert "traceback" not in line
            if line["logger"] == "microshop.background":
                assert line["level"] == "WARNING"
                job = line["message"].partition(" cannot run: ")[0]
                warnings[job].append(datetime.fromisoformat(line["time"]).timestamp())
        assert_one_warning_per_job_with_back_off(warnings)

        migrated = server.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr

        assert_the_shop_works(transport.request)
        assert wait_for(
            lambda: (
                {
                    line["message"].removesuffix(" works again")
                    for line in logged_lines(server)
                    if line["message"].endswith(" works again")
                }
                == set(warnings)
            ),
            timeout=10,
        )
        assert "Traceback" not in server.log.read_text()
        assert server.process.poll() is None
    finally:
        transport.close()
