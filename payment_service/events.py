"""What the payment service does when the order service reports a change."""

from __future__ import annotations

from functools import partial

from app.kit.events import Handlers, Handling
from app.kit.topics import OrderCancelled
from payment_service.checkout import Checkout
from payment_service.models import deny_list


def handlers(checkout: Checkout) -> Handlers:
    return {
        **deny_list.handlers,
        OrderCancelled: partial(on_order_cancelled, checkout),
    }


def on_order_cancelled(checkout: Checkout, event: OrderCancelled, handling: Handling) -> None:
    """A cancelled order's payment is refunded in full, outside any transaction until the
    refund is recorded (``Checkout.refund_cancelled_order``)."""
    checkout.refund_cancelled_order(event.order_id, handling)
