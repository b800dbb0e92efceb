"""What the order service does when the payment service reports a change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.events import publish
from order_service.models import OrderStatus
from order_service.service import find_order, transition


def on_payment_succeeded(session: Session, payload: dict[str, Any]) -> None:
    """The order is paid; if it was cancelled meanwhile, ask for the money back."""
    order = find_order(session, payload["order_id"], for_update=True)
    if order.status is OrderStatus.PENDING:
        transition(order, OrderStatus.PAID)
    elif order.status is OrderStatus.CANCELLED:
        publish(session, "order.cancelled", {"order_id": order.id})


def on_payment_refunded(session: Session, payload: dict[str, Any]) -> None:
    """A payment was refunded in full: the order ends ``refunded``.

    Events can arrive out of order after retries: a refund may overtake the payment it
    refunds, so a pending order passes through ``paid`` on its way."""
    order = find_order(session, payload["order_id"], for_update=True)
    if order.status is OrderStatus.PENDING:
        transition(order, OrderStatus.PAID)
    if order.status is not OrderStatus.REFUNDED:
        transition(order, OrderStatus.REFUNDED)
