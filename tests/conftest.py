"""Fixtures: every database test runs on SQLite and, when configured, on PostgreSQL (the
database-facing modules, marked ``backends``, on MariaDB/MySQL too); every API test also
runs through a real waitress server (on SQLite: the database paths run in-process on each
backend)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from flask import Flask
from support import (
    BACKENDS,
    SERVICES,
    HttpTransport,
    Server,
    ServiceClient,
    Shop,
    WsgiTransport,
    database_urls,
    drop_mysql_databases,
    drop_postgres_schemas,
    make_settings,
    mysql_url,
    postgres_url,
    ready_application,
    server_databases,
)
from werkzeug.test import Client

import user_service
from app.kit.service import parts_of
from app.runtime.composition import Application
from app.settings import Settings

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and postgres_url() is None:
        raise pytest.UsageError("CI must set MICROSHOP_TEST_POSTGRES_URL: no skipping PostgreSQL")
    if os.environ.get("CI") and mysql_url() is None:
        raise pytest.UsageError("CI must set MICROSHOP_TEST_MYSQL_URL: no skipping MariaDB")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """In a module marked ``backends(...)``, a test runs on those databases: through
    ``backend``, or ``shop``/``users`` (which add the waitress server), unless it chooses
    its own (a PostgreSQL-only test stays so)."""
    chosen = metafunc.definition.get_closest_marker("backends")
    if chosen is None:
        return
    own = {
        name.strip()
        for mark in metafunc.definition.iter_markers("parametrize")
        for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])
    }
    for name, params, indirect in (
        ("backend", list(chosen.args), False),
        ("shop", [*chosen.args, *WAITRESS], True),
        ("users", [*chosen.args, *WAITRESS], True),
    ):
        if name in metafunc.fixturenames and name not in own:
            metafunc.definition.add_marker(pytest.mark.parametrize(name, params, indirect=indirect))


def pytest_sessionfinish(session: pytest.Session) -> None:
    base = postgres_url()
    if base is not None:
        drop_postgres_schemas(base)
    base = mysql_url()
    if base is not None:
        drop_mysql_databases(base)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, tmp_path: Path) -> Settings:
    """Production settings on a fresh database of the backend under test."""
    return make_settings(tmp_path, database_urls(backend, tmp_path))


@pytest.fixture
def application(settings: Settings) -> Iterator[Application]:
    """The composed application; in production the operator creates the schema (init-db)."""
    application = ready_application(settings)
    yield application
    application.dispose()


@pytest.fixture
def client(application: Application) -> Client:
    return Client(application)


@pytest.fixture
def user_app(settings: Settings) -> Iterator[Flask]:
    app = user_service.create_app(settings)
    parts_of(app).database.create_schema()
    yield app
    parts_of(app).database.dispose()


@contextmanager
def once_per_backend(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    start: Callable[[Path, dict[str, str]], T],
    stop: Callable[[T], None],
) -> Iterator[Callable[[str], T]]:
    """``on(backend)``: what ``start`` made on fresh databases of that backend, made when
    first asked for and shared by the tests that ask; stopped, and its databases dropped,
    at the end. State is not reset between tests."""
    with ExitStack() as stack:
        made: dict[str, T] = {}

        def on(backend: str) -> T:
            if backend not in made:
                folder = tmp_path_factory.mktemp(f"{kind}-{backend}")
                urls = stack.enter_context(server_databases(backend, folder))
                made[backend] = start(folder, urls)
                stack.callback(stop, made[backend])
            return made[backend]

        yield on


@pytest.fixture(scope="session")
def live_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Server]]:
    """A production waitress server per backend, shared by the tests that use it."""
    with once_per_backend(
        tmp_path_factory,
        "live",
        lambda folder, urls: Server.start(folder, databases=urls),
        Server.stop,
    ) as on:
        yield on


@pytest.fixture(scope="session")
def shared_applications(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Application]]:
    """The composed application per backend, shared by the API tests, as the waitress
    server is: they sign up their own accounts, so none depends on another's state, and
    building the three services per test cost more than the test."""
    with once_per_backend(
        tmp_path_factory,
        "shared",
        lambda folder, urls: ready_application(make_settings(folder, urls)),
        Application.dispose,
    ) as on:
        yield on


@pytest.fixture(params=BACKENDS)
def live_server(request: pytest.FixtureRequest, live_servers: Callable[[str], Server]) -> Server:
    """The shared waitress server on each backend."""
    return live_servers(request.param)


@pytest.fixture
def server_urls(backend: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Fresh databases on the backend under test for the server processes a test starts."""
    with server_databases(backend, tmp_path) as urls:
        yield urls


WAITRESS = ["waitress-sqlite"]
"""The API tests' run through the shared waitress server: what HTTP adds is the same on
every database, and the in-process runs already cover each backend's database."""


@pytest.fixture(params=[*BACKENDS, *WAITRESS])
def shop(request: pytest.FixtureRequest) -> Iterator[Shop]:
    """The composed application: in-process on each backend, then under the waitress
    server; each shared by the tests that use it."""
    if request.param.startswith("waitress-"):
        server = request.getfixturevalue("live_servers")(request.param.removeprefix("waitress-"))
        transports = {name: HttpTransport(f"{server.url}/{name}") for name in SERVICES}

        def run_command(args: list[str], env: dict[str, str]) -> tuple[int, str]:
            result = server.cli(*args, **env)
            return result.returncode, result.stdout + result.stderr
    else:
        application = request.getfixturevalue("shared_applications")(request.param)
        client = Client(application)
        transports = {
            name: WsgiTransport(client, on_close=lambda: None, prefix=f"/{name}")
            for name in SERVICES
        }
        runner = application.services["user"].test_cli_runner()

        def run_command(args: list[str], env: dict[str, str]) -> tuple[int, str]:
            result = runner.invoke(args=args, env=env)
            return result.exit_code, result.output

    yield Shop(
        users=ServiceClient(transports["user"], run_command),
        orders=ServiceClient(transports["order"], run_command),
        payments=ServiceClient(transports["payment"], run_command),
    )
    for transport in transports.values():
        transport.close()


@pytest.fixture(params=[*BACKENDS, *WAITRESS])
def users(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceClient]:
    """The user service by its own paths: the Flask test client on each backend, then the
    composed application under the shared waitress server, in production."""
    if request.param.startswith("waitress-"):
        server = request.getfixturevalue("live_servers")(request.param.removeprefix("waitress-"))
        transport = HttpTransport(server.url + "/user")

        def run_command(args: list[str], env: dict[str, str]) -> tuple[int, str]:
            result = server.cli(*args, **env)
            return result.returncode, result.stdout + result.stderr
    else:
        settings = make_settings(tmp_path, database_urls(request.param, tmp_path))
        app = user_service.create_app(settings)
        parts_of(app).database.create_schema()
        transport = WsgiTransport(app.test_client(), on_close=parts_of(app).database.dispose)

        def run_command(args: list[str], env: dict[str, str]) -> tuple[int, str]:
            result = app.test_cli_runner().invoke(args=args, env=env)
            return result.exit_code, result.output

    yield ServiceClient(transport, run_command)
    transport.close()
