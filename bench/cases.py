"""The benchmark's cases, in the order each round runs them, and the servers they load.

A case names its server and the ``bench/wrk.lua`` arguments it sends, made from the
``Fixture`` (the tokens and order ids the seeded shops gave out before the rounds). A
case may run another beside it, on the same server at the same time (reads while logins
hash); ``SOAK`` runs once, after the rounds, to see the memory of a long-running shop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.seed import PASSWORD, username
from bench.servers import gunicorn, uvicorn, waitress

LOGIN_USERS = range(3, 11)
"""Logins rotate over users 3 to 10 (the reader and the writer keep their tokens)."""
SMALL_SHOP_ORDERS = 1000
"""The orders of the small shop, whose order read the full shop's is compared with (the
titles and ratios below say 1 000)."""
SOAK_REQUESTS = 200_000
"""Requests the SQLite shop serves, from the warm-up to the end of ``SOAK``."""
SOAK_MOST_SECONDS = 180
"""The longest the soak runs, so that ``make bench`` stays within 15 minutes on 2 cores."""


@dataclass(frozen=True)
class Fixture:
    """What the cases need from the seeded shops."""

    reader_token: str
    writer_token: str
    reader_ids: list[int]
    """A sample of the reader's orders in the SQLite shop."""
    deep_cursor: str
    """A cursor twenty orders before the end of the reader's list: its last page."""
    postgres_reader_ids: list[int]
    small_reader_ids: list[int]
    """The reader's orders in the shop of ``SMALL_SHOP_ORDERS`` orders."""


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    server: str
    wrk_args: Callable[[Fixture], list[str]]
    connections: int = 8
    beside: str | None = None
    """A case run on the same server for as long as this one; only its rate is kept."""


@dataclass(frozen=True)
class ServerSpec:
    command: list[str]
    health: str
    """Any answer on this path means the server is up."""


SERVERS = {
    "raw_wsgi": ServerSpec(waitress("bench.peers.raw_wsgi:application"), "/"),
    "flask_hello": ServerSpec(waitress("bench.peers.flask_hello:app"), "/"),
    "shop": ServerSpec(waitress("wsgi:application"), "/healthz"),
    "shop_postgres": ServerSpec(waitress("wsgi:application"), "/healthz"),
    "shop_small": ServerSpec(waitress("wsgi:application"), "/healthz"),
    "shop_gunicorn": ServerSpec(gunicorn("wsgi:application", workers=2), "/healthz"),
    "fastapi": ServerSpec(uvicorn("bench.peers.fastapi_read:create_app"), "/order/1"),
    "naive_flask": ServerSpec(
        waitress("bench.peers.naive_flask:create_app", call=True), "/order/1"
    ),
}


def _reads(token: str, ids: list[int]) -> list[str]:
    return ["get", token, ",".join(f"/order/{order_id}" for order_id in ids)]


CASES = [
    Case(
        "raw_wsgi",
        "raw WSGI callable on waitress (the limit)",
        "raw_wsgi",
        lambda f: ["get", "-", "/"],
    ),
    Case("flask_hello", "bare Flask hello on waitress", "flask_hello", lambda f: ["get", "-", "/"]),
    Case("healthz", "microshop `GET /healthz`", "shop", lambda f: ["get", "-", "/healthz"]),
    Case(
        "order_read",
        "microshop `GET /order/<id>`",
        "shop",
        lambda f: _reads(f.reader_token, f.reader_ids),
    ),
    Case(
        "first_page",
        "microshop `GET /order/?limit=20`, first page",
        "shop",
        lambda f: ["get", f.reader_token, "/order/?limit=20"],
    ),
    Case(
        "deep_page",
        "microshop `GET /order/?limit=20`, last page (cursor)",
        "shop",
        lambda f: ["get", f.reader_token, f"/order/?limit=20&cursor={f.deep_cursor}"],
    ),
    Case(
        "place_order",
        "microshop `POST /order/`",
        "shop",
        lambda f: ["post", f.writer_token, "/order/", '{"product": "bench lamp", "price": 12.5}'],
    ),
    Case(
        "pay_flow",
        "microshop pay flow: `POST /order/`, then `POST /payment/`",
        "shop",
        lambda f: ["pay", f.writer_token],
    ),
    Case(
        "login",
        "microshop `POST /user/login` (argon2id), c=4",
        "shop",
        lambda f: ["login", ",".join(username(i) for i in LOGIN_USERS), PASSWORD],
        connections=4,
    ),
    Case(
        "order_read_beside_login",
        "microshop `GET /order/<id>` while logins run beside it (c=4)",
        "shop",
        lambda f: _reads(f.reader_token, f.reader_ids),
        beside="login",
    ),
    Case(
        "order_read_small",
        "microshop `GET /order/<id>`, a shop of 1 000 orders",
        "shop_small",
        lambda f: _reads(f.reader_token, f.small_reader_ids),
    ),
    Case(
        "order_read_postgres",
        "microshop `GET /order/<id>` on PostgreSQL",
        "shop_postgres",
        lambda f: _reads(f.reader_token, f.postgres_reader_ids),
    ),
    Case(
        "order_read_gunicorn",
        "microshop `GET /order/<id>` on gunicorn, 2 gthread workers",
        "shop_gunicorn",
        lambda f: _reads(f.reader_token, f.reader_ids),
    ),
    Case(
        "fastapi_read",
        "FastAPI + uvicorn, the same read",
        "fastapi",
        lambda f: _reads(f.reader_token, f.reader_ids),
    ),
    Case(
        "naive_flask_read",
        "naive Flask stack (restful + jwt-extended + ORM get), the same read",
        "naive_flask",
        lambda f: _reads(f.reader_token, f.reader_ids),
    ),
]
SOAK = Case(
    "soak",
    "microshop `GET /order/<id>`, the soak after the rounds (memory)",
    "shop",
    lambda f: _reads(f.reader_token, f.reader_ids),
)
"""Run once after the rounds, until the SQLite shop has served ``SOAK_REQUESTS`` since its
warm-up (or for ``SOAK_MOST_SECONDS``), to compare its peak memory then and now."""
