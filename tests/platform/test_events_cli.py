"""``microshop events``: what an operator sees of events that are stuck, and putting a
dead letter back once its cause is fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select
from support import SECRET, database_urls

from app.kit.database import Database, utcnow
from app.runtime.cli import main
from order_service.models import Order, OrderStatus, outbox


@pytest.fixture
def run(backend: str, tmp_path: Path):
    urls = database_urls(backend, tmp_path)
    environment = {
        "MICROSHOP_ENV": "production",
        "MICROSHOP_JWT_SECRET": SECRET,
        "MICROSHOP_INSTANCE_DIR": str(tmp_path),
        "MICROSHOP_SERVICES": None,
        **{f"MICROSHOP_{name.upper()}_DATABASE_URL": url for name, url in urls.items()},
    }

    def run(*args: str):
        return CliRunner().invoke(main, list(args), env=environment)

    assert run("migrate").exit_code == 0
    run.urls = urls  # type: ignore[attr-defined]
    return run


def order_database(run) -> Database:
    return Database.connect(run.urls["order"], MetaData())


def test_a_dead_letter_is_listed_and_put_back_once_its_cause_is_fixed(run):
    database = order_database(run)
    try:
        with database.unit_of_work() as session:
            order = Order(
                userid=7,
                product="lamp",
                price_minor=1000,
                quantity=1,
                amount_minor=1000,
                currency="USD",
                status=OrderStatus.PENDING,
            )
            session.add(order)
            session.flush()
            order_id = order.id
            session.execute(  # its handler failed ten times when the order was not there yet
                outbox.failures.insert().values(
                    event_id="e" * 32,
                    topic="payment.succeeded",
                    revision=1,
                    payload=json.dumps({"payment_id": 3, "order_id": order_id}),
                    attempts=10,
                    last_error="NotFound: order not found",
                    failed_at=utcnow(),
                    next_attempt_at=None,
                    dead_at=utcnow(),
                )
            )

        listed = run("events")
        assert listed.exit_code == 0, listed.output
        [line] = listed.output.splitlines()
        assert line.split()[:5] == ["order", "dead", "e" * 32, "payment.succeeded", "attempts=10"]
        assert line.endswith("NotFound: order not found")

        retried = run("events", "retry", "e" * 32)
        assert retried.exit_code == 0, retried.output
        assert retried.output == f"order: {'e' * 32} handled\n"
        with database.unit_of_work(readonly=True) as session:
            assert session.scalar(select(Order.status)) is OrderStatus.PAID
        assert run("events").output == "no event is unsent, failing or dead\n"

        again = run("events", "retry", "e" * 32)
        assert again.exit_code == 1
        assert again.output == f"Error: no mounted service has a dead letter {'e' * 32}\n"
    finally:
        database.dispose()


def test_an_unsent_event_is_listed_with_why(run):
    database = order_database(run)
    try:
        with database.unit_of_work() as session:
            session.execute(
                outbox.table.insert().values(
                    event_id="u" * 32,
                    topic="order.cancelled",
                    revision=1,
                    payload=json.dumps({"order_id": 1}),
                    created_at=utcnow(),
                    delivered_to="",
                    attempts=2,
                    next_attempt_at=utcnow(),
                    last_error="payment: payment service unavailable",
                )
            )
        [line] = run("events").output.splitlines()
        assert line.split()[:5] == ["order", "unsent", "u" * 32, "order.cancelled", "attempts=2"]
        assert line.endswith("payment: payment service unavailable")
    finally:
        database.dispose()
