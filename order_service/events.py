"""What the order service does when the payment service reports a change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.kit.events import Handler, Handling
from order_service.models import OrderStatus, deny_list, outbox
from order_service.service import find_order, transition


def handlers() -> Mapping[str, Handler]:
    return {
        **deny_list.handlers,
        "payment.succeeded": on_payment_succeeded,
        "payment.refunded": on_payment_refunded,
    }


def on_payment_succeeded(payload: dict[str, Any], handling: Handling) -> None:
    """The order is paid; if it was cancelled meanwhile, ask for the money back."""
    with handling() as session:
        order = find_order(session, payload["order_id"], for_update=True)
        if order.status is OrderStatus.PENDING:
            transition(order, OrderStatus.PAID)
        elif order.status is OrderStatus.CANCELLED:
            outbox.publish(session, "order.cancelled", {"order_id": order.id})


def on_payment_refunded(payload: dict[str, Any], handling: Handling) -> None:
    """A payment was refunded in full: the order ends ``refunded``.

    Events can arrive out of order after retries: a refund may overtake the payment it
    refunds, so a pending order passes through ``paid`` on its way."""
    with handling() as session:
        order = find_order(session, payload["order_id"], for_update=True)
        if order.status is OrderStatus.PENDING:
            transition(order, OrderStatus.PAID)
        if order.status is not OrderStatus.REFUNDED:
            transition(order, OrderStatus.REFUNDED)
