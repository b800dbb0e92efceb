"""The order service's event handlers, on a real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import DATABASE_BACKENDS, service_database

from app.kit.auth import Caller
from app.kit.database import Database
from app.kit.events import Handling
from app.kit.topics import Event, PaymentRefunded, PaymentSucceeded
from order_service import events, service
from order_service.models import Base, Order, OrderStatus, outbox
from order_service.schemas import NewOrder

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

ALICE = Caller(1, "user")


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[Database]:
    with service_database(backend, tmp_path, "order", Base.metadata) as database:
        yield database


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.unit_of_work() as session:
        yield session


def order_in(session: Session, status: OrderStatus) -> Order:
    order = service.place_order(session, ALICE, NewOrder(product="pen", price="1.00"))
    order.status = status
    return order


def placed(database: Database, status: OrderStatus) -> int:
    with database.unit_of_work() as session:
        order = order_in(session, status)
        session.flush()
        return order.id


def handled(database: Database, handler, event: Event) -> Order:
    """Run ``handler`` as the inbox does; the order as it is afterwards."""
    event_id = uuid.uuid4().hex
    handler(event, Handling(database, outbox, event_id, event.topic))
    with database.unit_of_work(readonly=True) as session:
        assert list(session.scalars(select(outbox.inbox.c.event_id))) == [event_id]
        return session.get_one(Order, event.order_id)


def outbox_topics(database: Database) -> list[str]:
    with database.unit_of_work(readonly=True) as session:
        return list(session.scalars(select(outbox.table.c.topic)))


def test_a_payment_makes_a_pending_order_paid(database: Database):
    order_id = placed(database, OrderStatus.PENDING)
    event = PaymentSucceeded(order_id=order_id, payment_id=1)
    order = handled(database, events.on_payment_succeeded, event)
    assert order.status is OrderStatus.PAID
    assert outbox_topics(database) == []


def test_a_payment_for_an_order_cancelled_meanwhile_asks_for_a_refund(database: Database):
    order_id = placed(database, OrderStatus.CANCELLED)
    event = PaymentSucceeded(order_id=order_id, payment_id=1)
    order = handled(database, events.on_payment_succeeded, event)
    assert order.status is OrderStatus.CANCELLED
    assert outbox_topics(database) == ["order.cancelled"]


@pytest.mark.parametrize(
    "status", [OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.REFUNDED]
)
def test_a_full_refund_ends_the_order_refunded_whatever_came_first(database: Database, status):
    order_id = placed(database, status)
    event = PaymentRefunded(order_id=order_id, payment_id=1)
    order = handled(database, events.on_payment_refunded, event)
    assert order.status is OrderStatus.REFUNDED


def test_cancelling_a_paid_order_publishes_order_cancelled(session: Session):
    paid, pending = order_in(session, OrderStatus.PAID), order_in(session, OrderStatus.PENDING)
    service.cancel_order(session, ALICE, pending.id)
    assert list(session.scalars(select(outbox.table.c.topic))) == []
    service.cancel_order(session, ALICE, paid.id)
    assert list(session.scalars(select(outbox.table.c.topic))) == ["order.cancelled"]
