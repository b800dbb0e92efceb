"""What the tests share: settings, databases, a real waitress server, and clients that
speak to a service the same way in-process and over HTTP."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt
import psycopg
import pymysql
import pytest
from sqlalchemy.engine import make_url
from werkzeug.test import Client

from app.kit.database import Database
from app.kit.service import parts_of
from app.runtime.composition import Application, create_application
from app.runtime.migrations import prepare_schema
from app.settings import ServiceSpec, Settings

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct-horse-battery"
SERVICES = ("user", "order", "payment")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_counter = itertools.count(1)


def unique(prefix: str = "user") -> str:
    """A username no other test in this run uses (servers may be shared between tests)."""
    return f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:6]}"


def postgres_url() -> str | None:
    return os.environ.get("MICROSHOP_TEST_POSTGRES_URL") or None


def fresh_postgres_schema(base_url: str, schema: str) -> str:
    """An empty schema in the test database, and a URL whose connections use only it."""
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options=-csearch_path%3D{schema}"


ONLY_POSTGRES = pytest.param(
    "postgresql",
    marks=pytest.mark.skipif(
        postgres_url() is None, reason="MICROSHOP_TEST_POSTGRES_URL is not set"
    ),
)
BACKENDS = ["sqlite", ONLY_POSTGRES]
"""Every database test runs on both; PostgreSQL only where its URL is set (CI sets it)."""


def postgres_schema(service: str) -> str:
    """Named per test process, so two runs on one database never drop each other's tables."""
    return f"test_{os.getpid()}_{service}"


def drop_postgres_schema(base_url: str, schema: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drop_postgres_schemas(base_url: str) -> None:
    for service in SERVICES:
        drop_postgres_schema(base_url, postgres_schema(service))


def mysql_url() -> str | None:
    return os.environ.get("MICROSHOP_TEST_MYSQL_URL") or None


ONLY_MYSQL = pytest.param(
    "mysql",
    marks=pytest.mark.skipif(mysql_url() is None, reason="MICROSHOP_TEST_MYSQL_URL is not set"),
)
DATABASE_BACKENDS = [*BACKENDS, ONLY_MYSQL]
"""The database-facing tests (``pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)``)
run on MariaDB/MySQL too, where its URL is set (CI sets it); the rest stay on ``BACKENDS``."""


def mysql_database(service: str) -> str:
    """Named after the run's database and this test process, so two processes (or runs)
    on one server never drop each other's, and CI's clean-up finds them by prefix."""
    base = make_url(mysql_url() or "mysql://localhost/test").database or "test"
    return f"{base}_{os.getpid()}_{service}"


def _mysql_server(base_url: str) -> pymysql.Connection:
    url = make_url(base_url)
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        autocommit=True,
    )


def fresh_mysql_database(base_url: str, database: str) -> str:
    """An empty database on the test server, made with the server's default collation
    (case-insensitive, as an operator's would be), and a URL for it."""
    with _mysql_server(base_url) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}`")
    return make_url(base_url).set(database=database).render_as_string(hide_password=False)


def drop_mysql_database(base_url: str, database: str) -> None:
    with _mysql_server(base_url) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")


def drop_mysql_databases(base_url: str) -> None:
    for service in SERVICES:
        drop_mysql_database(base_url, mysql_database(service))


def database_urls(backend: str, folder: Path) -> dict[str, str]:
    if backend == "sqlite":
        return {name: f"sqlite:///{folder / f'{name}.db'}" for name in SERVICES}
    if backend == "mysql":
        base = mysql_url()
        assert base, "MariaDB/MySQL tests need MICROSHOP_TEST_MYSQL_URL"
        return {name: fresh_mysql_database(base, mysql_database(name)) for name in SERVICES}
    base = postgres_url()
    assert base, "PostgreSQL tests need MICROSHOP_TEST_POSTGRES_URL"
    return {name: fresh_postgres_schema(base, postgres_schema(name)) for name in SERVICES}


@contextmanager
def scratch_databases(backend: str, folder: Path) -> Iterator[Callable[[str], str]]:
    """``url_of(name)``: a fresh database for one test, by name (a SQLite file, a PostgreSQL
    schema or a MariaDB/MySQL database of this test process), dropped at the end."""
    made: list[str] = []

    def url_of(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{folder / f'{name}.db'}"
        made.append(mysql_database(name) if backend == "mysql" else postgres_schema(name))
        if backend == "mysql":
            return fresh_mysql_database(mysql_url() or "", made[-1])
        return fresh_postgres_schema(postgres_url() or "", made[-1])

    try:
        yield url_of
    finally:
        for name in made:
            if backend == "mysql":
                drop_mysql_database(mysql_url() or "", name)
            else:
                drop_postgres_schema(postgres_url() or "", name)


@contextmanager
def service_database(backend: str, folder: Path, service: str, metadata: Any) -> Iterator[Database]:
    """One service's database, fresh on the backend under test, with its tables."""
    database = Database.connect(database_urls(backend, folder)[service], metadata)
    database.create_schema()
    try:
        yield database
    finally:
        database.dispose()


def make_settings(folder: Path, urls: Mapping[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "jwt_secret": SECRET,
        "instance_dir": folder,
        "services": tuple(ServiceSpec.parse(name) for name in SERVICES),
        "database_urls": dict(urls),
    }
    values.update(overrides)
    return Settings(**values)


def ready_application(settings: Settings) -> Application:
    """The composed application on databases that already hold its tables, as after
    ``microshop init-db``: its outbox sweepers never start on missing tables."""
    with_tables = create_application(settings, deliver_events=False)
    for service in with_tables.services.values():
        parts_of(service).database.create_schema()
    with_tables.dispose()
    return create_application(settings)


def migrate(settings: Settings) -> None:
    """What ``microshop init-db`` does (tests/platform/test_cli.py runs the command), in
    this process: a server's databases ready without starting Python once more for it."""
    migrator = create_application(settings, deliver_events=False)
    try:
        for name, app in migrator.services.items():
            prepare_schema(parts_of(app).database, name, app.import_name)
    finally:
        migrator.dispose()


def documents(application: Application, prefix: str = "") -> dict[str, dict[str, Any]]:
    """The OpenAPI document of each service, as the composed application serves it."""
    client = Client(application)
    replies = {name: client.get(f"{prefix}/{name}/openapi.json") for name in SERVICES}
    assert {reply.status_code for reply in replies.values()} == {200}
    return {name: reply.get_json() for name, reply in replies.items()}


def server_environment(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a production microshop process on SQLite files in ``folder``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MICROSHOP_")}
    env.update(
        {
            "MICROSHOP_ENV": "production",
            "MICROSHOP_JWT_SECRET": SECRET,
            "MICROSHOP_INSTANCE_DIR": str(folder),
            **extra,
        }
    )
    return env


def database_env(urls: Mapping[str, str]) -> dict[str, str]:
    """The environment that gives each service of ``urls`` its database."""
    return {f"MICROSHOP_{name.upper()}_DATABASE_URL": url for name, url in urls.items()}


@contextmanager
def server_databases(backend: str, folder: Path) -> Iterator[dict[str, str]]:
    """Fresh databases on ``backend`` for server processes, one per service, named for this
    process and this call, so that a server kept for a module or the session never shares
    its tables with another test's (``database_urls`` reuses one per process and service);
    dropped after."""
    call = next(_counter)
    with scratch_databases(backend, folder) as url_of:
        yield {name: url_of(f"server{call}_{name}") for name in SERVICES}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A real ``waitress-serve wsgi:application`` process on a loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path

    @classmethod
    def start(
        cls,
        folder: Path,
        port: int | None = None,
        *,
        via_cli: bool = False,
        databases: Mapping[str, str] | None = None,
        init_db: bool = True,
        **extra_env: str,
    ) -> Server:
        """``waitress-serve wsgi:application``, or ``microshop serve`` with ``via_cli``; on
        the SQLite files of ``folder`` unless ``databases`` names a URL per service.
        ``init_db=False`` starts it on databases a server before it has already made."""
        folder.mkdir(parents=True, exist_ok=True)
        env = server_environment(folder, **database_env(databases or {}), **extra_env)
        if init_db and all(key.startswith("MICROSHOP_") for key in extra_env):
            migrate(Settings.from_env(env))
        elif init_db:  # a service of the test's own may read variables only its process sees
            subprocess.run(
                [BIN / "microshop", "init-db"], env=env, cwd=ROOT, check=True, capture_output=True
            )
        port = port or free_port()
        log = folder / "server.log"
        command = (
            [BIN / "microshop", "serve", f"--port={port}"]
            if via_cli
            else [BIN / "waitress-serve", f"--listen=127.0.0.1:{port}", "wsgi:application"]
        )
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, f"http://127.0.0.1:{port}", env, log)
        try:
            server.wait_until_up()
        except RuntimeError:
            server.stop()  # one that came up too late would outlive the run
            raise
        return server

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cli(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run ``microshop`` against this server's databases."""
        return subprocess.run(
            [BIN / "microshop", *args],
            env={**self.env, **extra_env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )


@dataclass
class Reply:
    """A response, the same whichever transport carried it."""

    status_code: int
    headers: Mapping[str, str]
    text: str
    json: Any


class HttpTransport:
    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        if "json" in kwargs:  # as werkzeug does: ASCII escapes, so any str can be sent
            kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        if "data" in kwargs:
            kwargs["content"] = kwargs.pop("data")
        if "query_string" in kwargs:
            kwargs["params"] = kwargs.pop("query_string")
        response = self.http.request(method, path, **kwargs)
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return Reply(
            response.status_code,
            response.headers,
            response.text,
            response.json() if is_json else None,
        )

    def close(self) -> None:
        self.http.close()


class WsgiTransport:
    """Flask's or werkzeug's test client, in-process; ``prefix`` picks a mounted service."""

    def __init__(self, client: Any, on_close: Callable[[], None], prefix: str = ""):
        self.client = client
        self.on_close = on_close
        self.prefix = prefix

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        response = self.client.open(self.prefix + path, method=method, **kwargs)
        is_json = response.mimetype == "application/json"
        return Reply(
            response.status_code,
            response.headers,
            response.get_data(as_text=True),
            response.get_json() if is_json else None,
        )

    def close(self) -> None:
        self.on_close()


@dataclass
class Account:
    id: int
    username: str
    email: str
    password: str
    access: str = ""
    refresh: str = ""
    role: str = "user"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CommandRunner = Callable[[list[str], dict[str, str]], tuple[int, str]]
"""Runs a ``microshop`` command against the service's database: (exit code, output)."""


class ServiceClient:
    """Requests to one service by its own paths (``/register``), over either transport."""

    def __init__(self, transport: HttpTransport | WsgiTransport, run_command: CommandRunner):
        self.transport = transport
        self.run_command = run_command

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.transport.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.transport.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Reply:
        return self.transport.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Reply:
        return self.transport.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.transport.request("DELETE", path, **kwargs)

    def register(self, username: str | None = None, password: str = PASSWORD) -> Account:
        username = username or unique()
        email = f"{username}@example.com"
        reply = self.post(
            "/register", json={"username": username, "password": password, "email": email}
        )
        assert reply.status_code == 201, reply.text
        return Account(reply.json["data"]["id"], username, email, password)

    def login(self, account: Account) -> Account:
        reply = self.post(
            "/login", json={"username": account.username, "password": account.password}
        )
        assert reply.status_code == 200, reply.text
        account.access = reply.json["data"]["access_token"]
        account.refresh = reply.json["data"]["refresh_token"]
        return account

    def signed_up(self) -> Account:
        return self.login(self.register())

    def admin(self) -> Account:
        """An admin made as an operator makes one: ``microshop create-admin``."""
        username = unique("admin")
        email = f"{username}@example.com"
        code, output = self.run_command(
            ["create-admin", username, "--email", email], {"MICROSHOP_ADMIN_PASSWORD": PASSWORD}
        )
        assert code == 0, output
        account = self.login(Account(0, username, email, PASSWORD, role="admin"))
        account.id = int(jwt.decode(account.access, options={"verify_signature": False})["sub"])
        return account


@dataclass
class Shop:
    """The composed application, one client per service (each by its own paths)."""

    users: ServiceClient
    orders: ServiceClient
    payments: ServiceClient

    def order(self, account: Account, price: Any = "19.99", quantity: int = 1) -> dict[str, Any]:
        reply = self.orders.post(
            "/",
            json={"product": "pen", "price": price, "quantity": quantity},
            headers=account.headers,
        )
        assert reply.status_code == 201, reply.text
        return reply.json["data"]

    def pay(self, account: Account, order_id: int, **extra: Any) -> Reply:
        return self.payments.post(
            "/", json={"order_id": order_id, **extra}, headers=account.headers
        )


def assert_error(reply: Reply, status: int, slug: str) -> dict[str, Any]:
    """The JSON error envelope of API.md, with this status and slug; returns its data."""
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json["code"] == status
    assert reply.json["data"]["error"] == slug
    assert isinstance(reply.json["msg"], str)
    assert reply.json["msg"]
    return reply.json["data"]


def assert_fields(reply: Reply, *names: str) -> dict[str, str]:
    """A 422 ``validation_error`` naming exactly these fields; returns the messages."""
    data = assert_error(reply, 422, "validation_error")
    assert set(data["fields"]) == set(names), data["fields"]
    return data["fields"]


def forge(claims: dict[str, Any], *, key: str = SECRET, algorithm: str = "HS256", **header: Any):
    return jwt.encode(claims, key, algorithm=algorithm, headers=header or None)


def access_claims(user_id: int, **overrides: Any) -> dict[str, Any]:
    """The claims microshop puts in an access token, valid for the next minute."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "user",
        "ver": 0,
        "type": "access",
        "fresh": False,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return claims


# --- a real process over HTTP ---------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Whether ``check()`` came true within ``timeout`` seconds (asked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def sign_up_at(base: str) -> dict[str, str]:
    """A new account at the process at ``base``: the headers of its access token."""
    name = unique("payer")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert httpx.post(f"{base}/user/register", json=body).status_code == 201
    login = httpx.post(f"{base}/user/login", json={"username": name, "password": PASSWORD})
    return bearer(login.json()["data"]["token"])


def place_order_at(base: str, headers: dict[str, str], price: str = "42.50") -> int:
    reply = httpx.post(f"{base}/order/", json={"product": "lamp", "price": price}, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()["data"]["id"]


def order_status_at(base: str, headers: dict[str, str], order_id: int) -> str:
    return httpx.get(f"{base}/order/{order_id}", headers=headers).json()["data"]["status"]


# --- RabbitMQ -------------------------------------------------------------------------


@contextmanager
def rabbitmq_vhost(amqp_url: str) -> Iterator[str]:
    """A virtual host of its own on the broker at ``amqp_url`` (made with rabbitmqctl, so
    its queues start empty), deleted afterwards: the URL that names it."""
    vhost = f"microshop_test_{uuid.uuid4().hex[:12]}"
    user = urlsplit(amqp_url).username or "guest"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        base = amqp_url.split("?")[0].rsplit("/", 1)[0]
        yield f"{base}/{quote(vhost, safe='')}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
