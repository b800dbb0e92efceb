"""What the order service does when the payment service reports a change."""

from __future__ import annotations

from app.kit.events import Handlers, Handling
from app.kit.topics import OrderCancelled, PaymentRefunded, PaymentSucceeded
from order_service.models import OrderStatus, deny_list, outbox
from order_service.service import find_order, transition


def handlers() -> Handlers:
    return {
        **deny_list.handlers,
        PaymentSucceeded: on_payment_succeeded,
        PaymentRefunded: on_payment_refunded,
    }


def on_payment_succeeded(event: PaymentSucceeded, handling: Handling) -> None:
    """The order is paid; if it was cancelled meanwhile, ask for the money back."""
    with handling() as session:
        order = find_order(session, event.order_id, for_update=True)
        if order.status is OrderStatus.PENDING:
            transition(order, OrderStatus.PAID)
        elif order.status is OrderStatus.CANCELLED:
            outbox.publish(session, OrderCancelled(order_id=order.id))


def on_payment_refunded(event: PaymentRefunded, handling: Handling) -> None:
    """A payment was refunded in full: the order ends ``refunded``.

    Events can arrive out of order after retries: a refund may overtake the payment it
    refunds, so a pending order passes through ``paid`` on its way."""
    with handling() as session:
        order = find_order(session, event.order_id, for_update=True)
        if order.status is OrderStatus.PENDING:
            transition(order, OrderStatus.PAID)
        if order.status is not OrderStatus.REFUNDED:
            transition(order, OrderStatus.REFUNDED)
