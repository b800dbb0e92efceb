"""The benchmark's data set, written straight into migrated databases in seconds.

    urls = {"user": ..., "order": ..., "payment": ...}   # after ``microshop migrate``
    counts = seed(urls, users=10_000, orders=1_000_000)   # Counts(users, orders, payments)

Every user has the same password (one real argon2id hash at the product's settings,
reused, so a login costs what it costs in production). User 1, the reader, owns about
1% of the orders, spread over the whole table; the others are spread at random over
users 2 and up. Every tenth order has a payment (90% succeeded, 10% refunded, with its
refund row), so there are ``orders // 10`` payments; the unpaid orders are pending or,
one in seven, cancelled. Rows obey the models' CHECK constraints, and timestamps rise
with the id over the year before ``SEEDED_AT``. The rows come from a seeded generator:
the same counts make the same data set, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, text

from app.kit.database import normalize_url
from order_service.models import Order, OrderStatus
from payment_service.models import Payment, PaymentStatus, Refund, RefundStatus
from user_service.models import User
from user_service.passwords import hash_password

PASSWORD = "bench-password-0123"
READER = 1
"""The user whose token reads orders: ``GET /order/<id>`` picks among its orders."""
WRITER = 2
"""The user whose token places and pays orders."""
SEEDED_AT = datetime(2026, 11, 1, tzinfo=UTC)
SEEDED_TABLES = {"user": ("users",), "order": ("orders",), "payment": ("payments", "refunds")}
CHUNK = 20_000
"""Rows per executemany: the generator's memory stays small at a million rows."""


def username(user_id: int) -> str:
    return f"user{user_id:05d}"


@dataclass
class Rows:
    """One chunk of orders, with the payments and refunds that belong to them."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Counts:
    users: int
    orders: int
    payments: int


def seed(urls: Mapping[str, str], *, users: int, orders: int, random_seed: int = 11) -> Counts:
    """Fill the three migrated, empty databases; one transaction per database."""
    engines = {name: create_engine(normalize_url(url)) for name, url in urls.items()}
    payments = 0
    try:
        with engines["user"].begin() as user_db:
            for chunk in _user_chunks(users):
                user_db.execute(User.__table__.insert(), chunk)
        with engines["order"].begin() as order_db, engines["payment"].begin() as payment_db:
            for rows in _order_chunks(orders, users, random_seed):
                order_db.execute(Order.__table__.insert(), rows.orders)
                if rows.payments:
                    payment_db.execute(Payment.__table__.insert(), rows.payments)
                    payments += len(rows.payments)
                if rows.refunds:
                    payment_db.execute(Refund.__table__.insert(), rows.refunds)
        for name, tables in SEEDED_TABLES.items():
            _after_bulk_load(engines[name], tables)
    finally:
        for engine in engines.values():
            engine.dispose()
    return Counts(users=users, orders=orders, payments=payments)


def reader_order_ids(order_url: str) -> list[int]:
    """Every order of the reader, oldest first."""
    engine = create_engine(normalize_url(order_url))
    try:
        with engine.connect() as connection:
            return list(
                connection.scalars(
                    text("SELECT id FROM orders WHERE userid = :userid ORDER BY id"),
                    {"userid": READER},
                )
            )
    finally:
        engine.dispose()


def _after_bulk_load(engine: Engine, tables: tuple[str, ...]) -> None:
    """On PostgreSQL, move each id sequence past the explicit ids, and gather the planner's
    statistics, as autovacuum would in a shop that grew to this size."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
            connection.exec_driver_sql(f"ANALYZE {table}")


def _user_chunks(count: int) -> Iterator[list[dict[str, Any]]]:
    password_hash = hash_password(PASSWORD)
    joined = SEEDED_AT - timedelta(days=400)
    for start in range(1, count + 1, CHUNK):
        yield [
            _user_row(user_id, password_hash, joined)
            for user_id in range(start, min(start + CHUNK, count + 1))
        ]


def _user_row(user_id: int, password_hash: str, joined: datetime) -> dict[str, Any]:
    name = username(user_id)
    return {
        "id": user_id,
        "username": name,
        "username_key": name,
        "email": f"{name}@example.com",
        "email_key": f"{name}@example.com",
        "password_hash": password_hash,
        "role": "user",
        "token_version": 0,
        "created_at": joined + timedelta(minutes=user_id),
    }


def _order_chunks(orders: int, users: int, random_seed: int) -> Iterator[Rows]:
    """Orders in chunks, each with the payments (and refunds) of its paid orders."""
    rng = random.Random(random_seed)
    first = SEEDED_AT - timedelta(days=365)
    step = timedelta(days=365) / max(orders, 1)
    rows = Rows()
    for order_id in range(1, orders + 1):
        userid = READER if rng.random() < 0.01 else rng.randint(WRITER, max(users, WRITER))
        price = rng.randint(100, 50_000)
        quantity = rng.choice((1, 1, 1, 2, 3))
        created = first + step * order_id
        paid = order_id % 10 == 0
        if paid:
            status = OrderStatus.REFUNDED if rng.random() < 0.1 else OrderStatus.PAID
        else:
            status = OrderStatus.CANCELLED if rng.random() < 1 / 7 else OrderStatus.PENDING
        order = {
            "id": order_id,
            "userid": userid,
            "product": f"product {rng.randint(1, 5_000)}",
            "price_minor": price,
            "quantity": quantity,
            "amount_minor": price * quantity,
            "currency": "USD",
            "status": status,
            "created_at": created,
            "updated_at": created + timedelta(minutes=2) if paid else created,
        }
        rows.orders.append(order)
        if paid:
            payment = _payment_row(order)
            rows.payments.append(payment)
            if payment["refunded_minor"]:
                rows.refunds.append(_refund_row(payment))
        if len(rows.orders) == CHUNK:
            yield rows
            rows = Rows()
    if rows.orders:
        yield rows


def _reference(prefix: str, name: str) -> str:
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:24]


def _payment_row(order: dict[str, Any]) -> dict[str, Any]:
    refunded = order["status"] is OrderStatus.REFUNDED
    payment_id = order["id"] // 10
    return {
        "id": payment_id,
        "order_id": order["id"],
        "userid": order["userid"],
        "amount_minor": order["amount_minor"],
        "currency": "USD",
        "status": PaymentStatus.REFUNDED if refunded else PaymentStatus.SUCCEEDED,
        "refunded_minor": order["amount_minor"] if refunded else 0,
        "method": "tok_visa",
        "charged_order_id": order["id"],
        "provider_reference": _reference("ch_", f"payment-{payment_id}"),
        "failure_reason": None,
        "created_at": order["created_at"] + timedelta(minutes=1),
        "updated_at": order["updated_at"],
    }


def _refund_row(payment: dict[str, Any]) -> dict[str, Any]:
    key = f"refund-{payment['id']}-1"
    return {
        "id": payment["id"],
        "payment_id": payment["id"],
        "amount_minor": payment["refunded_minor"],
        "status": RefundStatus.SUCCEEDED,
        "reference": key,
        "provider_reference": _reference("re_", key),
        "created_at": payment["updated_at"],
        "updated_at": payment["updated_at"],
    }
