"""The microshop under test: its production environment, its databases, and a login.

    env = shop_environment(folder / "sqlite", secret)          # SQLite files in the folder
    migrate(env)                                               # ``microshop migrate``
    with postgres_databases(base_url, run_id) as urls:         # a fresh schema per service
        migrate(shop_environment(folder / "pg", secret, urls)) # dropped when the block ends
    token = login(server.url, "user00001")

The bench server is the production configuration with two changes, both for the
benchmark's sake: the login limit is ``1000000 per minute`` (the real one, 10 a minute
per address and username, would make the login case measure 429s), and access tokens
live four hours, so that a token issued before the rounds outlives them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from bench.seed import PASSWORD
from bench.servers import BIN, ROOT

SERVICES = ("user", "order", "payment")
LOGIN_RATE_LIMIT = "1000000 per minute"
ACCESS_TOKEN_TTL = 4 * 3600
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def shop_environment(
    folder: Path, secret: str, database_urls: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a production microshop on ``folder`` (SQLite files by default)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MICROSHOP_")}
    env.update(
        MICROSHOP_ENV="production",
        MICROSHOP_JWT_SECRET=secret,
        MICROSHOP_INSTANCE_DIR=str(folder),
        MICROSHOP_LOGIN_RATE_LIMIT=LOGIN_RATE_LIMIT,
        MICROSHOP_ACCESS_TOKEN_TTL=str(ACCESS_TOKEN_TTL),
    )
    for service, url in (database_urls or {}).items():
        env[f"MICROSHOP_{service.upper()}_DATABASE_URL"] = url
    return env


def database_urls(env: Mapping[str, str]) -> dict[str, str]:
    """Each service's database URL in ``env``, as microshop resolves it."""
    folder = Path(env["MICROSHOP_INSTANCE_DIR"])
    return {
        service: env.get(f"MICROSHOP_{service.upper()}_DATABASE_URL")
        or f"sqlite:///{folder / f'{service}.db'}"
        for service in SERVICES
    }


def migrate(env: Mapping[str, str]) -> None:
    Path(env["MICROSHOP_INSTANCE_DIR"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(BIN / "microshop"), "migrate"],
        env=dict(env),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@contextmanager
def postgres_databases(base_url: str, run_id: str) -> Iterator[dict[str, str]]:
    """A fresh schema per service in the database at ``base_url``, and URLs whose
    connections see only it; the schemas are dropped when the block ends."""
    schemas = {service: f"bench_{run_id}_{service}" for service in SERVICES}
    separator = "&" if "?" in base_url else "?"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as connection:
        for schema in schemas.values():
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield {
            service: f"{base_url}{separator}options=-csearch_path%3D{schema}"
            for service, schema in schemas.items()
        }
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as connection:
            for schema in schemas.values():
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def postgres_version(base_url: str) -> str:
    with psycopg.connect(base_url, connect_timeout=5) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def login(url: str, username: str) -> str:
    """An access token for a seeded user (one login: the real limit allows ten a minute)."""
    reply = httpx.post(
        f"{url}/user/login", json={"username": username, "password": PASSWORD}, timeout=30
    )
    reply.raise_for_status()
    return reply.json()["data"]["access_token"]
