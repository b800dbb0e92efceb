"""What the payment service does when the order service reports a change."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from app.kit.events import Handler, Handling
from payment_service.checkout import Checkout
from payment_service.models import deny_list


def handlers(checkout: Checkout) -> Mapping[str, Handler]:
    return {
        **deny_list.handlers,
        "order.cancelled": partial(on_order_cancelled, checkout),
    }


def on_order_cancelled(checkout: Checkout, payload: dict[str, Any], handling: Handling) -> None:
    """A cancelled order's payment is refunded in full, outside any transaction until the
    refund is recorded (``Checkout.refund_cancelled_order``)."""
    checkout.refund_cancelled_order(payload["order_id"], handling)
