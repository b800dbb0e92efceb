"""The order service's rules: placing, reading, listing, cancelling. No Flask, no commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from app.kit.auth import Caller
from app.kit.database import read_row, utcnow
from app.kit.errors import Forbidden, NotFound
from app.kit.pagination import Page, keyset_page
from app.kit.topics import OrderCancelled
from order_service.errors import IllegalTransition
from order_service.models import Order, OrderStatus, outbox
from order_service.schemas import NewOrder, OrderQuery

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.CANCELLED, OrderStatus.REFUNDED}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.REFUNDED}),  # a paid order's refund lands
    OrderStatus.REFUNDED: frozenset(),
}


def transition(order: Order, target: OrderStatus) -> None:
    """Move ``order`` to ``target`` or raise: the one place a status changes."""
    if target not in TRANSITIONS[order.status]:
        raise IllegalTransition(order, target)
    order.status = target
    order.updated_at = utcnow()


def place_order(session: Session, caller: Caller, form: NewOrder) -> Order:
    """A pending order for the caller; ``amount = price * quantity`` in integer cents."""
    if form.userid is not None and form.userid != caller.id:
        raise Forbidden("userid must be your own id")
    now = utcnow()
    order = Order(
        userid=caller.id,
        product=form.product,
        price_minor=form.price,
        quantity=form.quantity,
        amount_minor=form.price * form.quantity,
        currency=form.currency,
        status=OrderStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    return order


def find_order(session: Session, order_id: int, *, for_update: bool = False) -> Order:
    order = session.get(Order, order_id, with_for_update=for_update)
    if order is None:
        raise NotFound("order")
    return order


def read_order(session: Session, order_id: int) -> Row[Any]:
    """The order as stored, for a read that only answers it (``read_row``)."""
    order = read_row(session, Order, order_id)
    if order is None:
        raise NotFound("order")
    return order


def owned_order(
    session: Session, caller: Caller, order_id: int, *, for_update: bool = False
) -> Order:
    """The order, if the caller owns it or is an admin (403 otherwise, 404 if none)."""
    order = find_order(session, order_id, for_update=for_update)
    _check_owner(order.userid, caller)
    return order


def view_order(session: Session, caller: Caller, order_id: int) -> Row[Any]:
    """``owned_order`` for a read: the order as stored (``read_row``)."""
    order = read_order(session, order_id)
    _check_owner(order.userid, caller)
    return order


def _check_owner(owner: int, caller: Caller) -> None:
    if owner != caller.id and not caller.is_admin:
        raise Forbidden("this order is not yours")


def cancel_order(session: Session, caller: Caller, order_id: int) -> Order:
    """Cancel a pending or paid order; cancelling again returns it unchanged.

    A paid order's payment is refunded in full (``order.cancelled``); the refund's event
    then ends the order ``refunded``."""
    order = owned_order(session, caller, order_id, for_update=True)
    if order.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        return order
    was_paid = order.status is OrderStatus.PAID
    transition(order, OrderStatus.CANCELLED)
    if was_paid:
        outbox.publish(session, OrderCancelled(order_id=order.id))
    return order


def list_orders(session: Session, caller: Caller, query: OrderQuery) -> Page[Order]:
    """The caller's orders (an admin's: everyone's), newest first, one keyset page."""
    statement = select(Order).order_by(Order.id.desc())
    if not caller.is_admin:
        statement = statement.where(Order.userid == caller.id)
    if query.status is not None:
        statement = statement.where(Order.status == query.status)
    return keyset_page(session, statement, Order.id, after=query.cursor, limit=query.limit)
