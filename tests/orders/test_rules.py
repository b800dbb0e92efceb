"""The order rules (service.py) and money on a real database, without Flask or HTTP."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from support import DATABASE_BACKENDS, service_database

from app.kit.auth import Caller
from app.kit.database import Database
from app.kit.errors import Forbidden, NotFound
from app.kit.money import as_number, to_minor
from order_service import service
from order_service.models import Base, Order, OrderStatus
from order_service.schemas import MAX_PRICE_MINOR, NewOrder, OrderQuery

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

ALICE, BOB, ADMIN = Caller(1, "user"), Caller(2, "user"), Caller(99, "admin")
ALLOWED = {
    (OrderStatus.PENDING, OrderStatus.PAID),
    (OrderStatus.PENDING, OrderStatus.CANCELLED),
    (OrderStatus.PAID, OrderStatus.CANCELLED),
    (OrderStatus.PAID, OrderStatus.REFUNDED),
    (OrderStatus.CANCELLED, OrderStatus.REFUNDED),
}


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[Database]:
    with service_database(backend, tmp_path, "order", Base.metadata) as database:
        yield database


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.unit_of_work() as session:
        yield session


def new_order(**fields) -> NewOrder:
    return NewOrder.model_validate({"product": "pen", "price": "2.50", **fields})


@pytest.mark.parametrize(("source", "target"), list(itertools.product(OrderStatus, OrderStatus)))
def test_every_transition_is_explicit(session: Session, source, target):
    order = service.place_order(session, ALICE, new_order())
    order.status = source
    if (source, target) in ALLOWED:
        service.transition(order, target)
        assert order.status is target
    else:
        with pytest.raises(service.IllegalTransition):
            service.transition(order, target)
        assert order.status is source


def test_cancelling_a_paid_order_marks_it_cancelled(session: Session):
    order = service.place_order(session, ALICE, new_order())
    service.transition(order, OrderStatus.PAID)
    assert service.cancel_order(session, ALICE, order.id).status is OrderStatus.CANCELLED


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.REFUNDED])
def test_cancelling_a_finished_order_changes_nothing(session: Session, status):
    order = service.place_order(session, ALICE, new_order())
    order.status = status
    before = order.updated_at
    assert service.cancel_order(session, ALICE, order.id).status is status
    assert order.updated_at == before


def test_only_the_owner_or_an_admin_reaches_an_order(session: Session):
    order = service.place_order(session, ALICE, new_order())
    assert service.owned_order(session, ADMIN, order.id) is order
    with pytest.raises(Forbidden):
        service.owned_order(session, BOB, order.id)
    with pytest.raises(Forbidden):
        service.cancel_order(session, BOB, order.id)
    assert order.status is OrderStatus.PENDING
    with pytest.raises(NotFound):
        service.owned_order(session, ALICE, order.id + 1)


def test_a_read_of_an_order_sees_it_as_stored_under_the_same_rules(session: Session):
    order = service.place_order(session, ALICE, new_order())
    session.flush()
    for caller in (ALICE, ADMIN):
        row = service.view_order(session, caller, order.id)
        assert (row.id, row.userid, row.status, row.created_at) == (
            order.id,
            order.userid,
            order.status,
            order.created_at,
        )
    with pytest.raises(Forbidden):
        service.view_order(session, BOB, order.id)
    with pytest.raises(NotFound):
        service.view_order(session, ALICE, order.id + 1)


def test_an_order_for_someone_else_is_refused(session: Session):
    with pytest.raises(Forbidden):
        service.place_order(session, ALICE, new_order(userid=str(BOB.id)))


def test_the_database_refuses_an_amount_that_is_not_price_times_quantity(database: Database):
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        session.add(
            Order(
                userid=1,
                product="pen",
                price_minor=250,
                quantity=2,
                amount_minor=499,
                currency="USD",
                status=OrderStatus.PENDING,
            )
        )


def test_list_pages_are_keyset_pages(session: Session):
    ids = [service.place_order(session, ALICE, new_order()).id for _ in range(5)]
    service.place_order(session, BOB, new_order())
    first = service.list_orders(session, ALICE, OrderQuery(limit=2))
    assert [order.id for order in first.items] == ids[::-1][:2]
    second = service.list_orders(
        session, ALICE, OrderQuery.model_validate({"limit": 2, "cursor": first.next_cursor})
    )
    assert [order.id for order in second.items] == ids[::-1][2:4]


# --- money -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "minor"),
    [
        (1, 100),
        (Decimal("19.99"), 1999),
        (Decimal("1.50"), 150),
        (Decimal("1.500"), 150),
        ("0.01", 1),
        ("1000000.00", 100_000_000),
        (Decimal("1E+3"), 100_000),
        ("7", 700),
    ],
)
def test_to_minor_reads_exact_values(value, minor: int):
    assert to_minor(value) == minor


@pytest.mark.parametrize(
    "value",
    [
        True,
        1.5,
        "1e3",
        "1.",
        ".5",
        "-1",
        "1.001",
        "1.500",
        "007",
        "1\n",
        Decimal("0.001"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+999999"),
        None,
        [1],
    ],
)
def test_to_minor_refuses_what_is_not_an_exact_amount(value):
    with pytest.raises(ValueError):  # noqa: PT011 (each message is checked in the API tests)
        to_minor(value)


@settings(max_examples=500, deadline=None)
@given(
    price=st.integers(min_value=1, max_value=MAX_PRICE_MINOR),
    quantity=st.integers(min_value=1, max_value=1000),
)
def test_amount_is_exactly_price_times_quantity_over_the_whole_range(price: int, quantity: int):
    text = f"{price // 100}.{price % 100:02d}"
    for given_price in (text, Decimal(text), json.loads(text, parse_float=Decimal)):
        form = new_order(price=given_price, quantity=quantity)
        assert form.price == price
        assert form.price * form.quantity == price * quantity
    shown = json.dumps(as_number(price * quantity))  # what a client reads
    assert Decimal(shown) == Decimal(price * quantity) / 100
    assert Decimal(json.dumps(as_number(price))) == Decimal(text)
