"""The order service's event handlers, on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import service_database

from app.auth import Caller
from order_service import events, service
from order_service.models import Base, Order, OrderStatus
from order_service.schemas import NewOrder

ALICE = Caller(1, "user")


@pytest.fixture
def session(backend: str, tmp_path: Path) -> Iterator[Session]:
    with (
        service_database(backend, tmp_path, "order", Base.metadata) as database,
        database.unit_of_work() as session,
    ):
        yield session


def order_in(session: Session, status: OrderStatus) -> Order:
    order = service.place_order(session, ALICE, NewOrder(product="pen", price="1.00"))
    order.status = status
    return order


def outbox_topics(session: Session) -> list[str]:
    outbox = Base.metadata.tables["outbox"]
    return list(session.scalars(select(outbox.c.topic)))


def test_a_payment_makes_a_pending_order_paid(session: Session):
    order = order_in(session, OrderStatus.PENDING)
    events.on_payment_succeeded(session, {"order_id": order.id, "payment_id": 1})
    assert order.status is OrderStatus.PAID
    assert outbox_topics(session) == []


def test_a_payment_for_an_order_cancelled_meanwhile_asks_for_a_refund(session: Session):
    order = order_in(session, OrderStatus.CANCELLED)
    events.on_payment_succeeded(session, {"order_id": order.id, "payment_id": 1})
    assert order.status is OrderStatus.CANCELLED
    assert outbox_topics(session) == ["order.cancelled"]


@pytest.mark.parametrize(
    "status", [OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.REFUNDED]
)
def test_a_full_refund_ends_the_order_refunded_whatever_came_first(session: Session, status):
    order = order_in(session, status)
    events.on_payment_refunded(session, {"order_id": order.id, "payment_id": 1})
    assert order.status is OrderStatus.REFUNDED


def test_cancelling_a_paid_order_publishes_order_cancelled(session: Session):
    paid, pending = order_in(session, OrderStatus.PAID), order_in(session, OrderStatus.PENDING)
    service.cancel_order(session, ALICE, pending.id)
    assert outbox_topics(session) == []
    service.cancel_order(session, ALICE, paid.id)
    assert outbox_topics(session) == ["order.cancelled"]
