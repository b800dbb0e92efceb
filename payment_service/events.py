"""What the payment service does when the order service reports a change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from payment_service import service
from payment_service.models import PaymentStatus
from payment_service.providers import PaymentProvider


class PaymentInFlight(Exception):
    """The order's payment is still being charged; the event is retried later."""


def refund_cancelled_orders(provider: PaymentProvider) -> Callable[[Session, dict[str, Any]], None]:
    """``order.cancelled``: refund the order's payment in full, if it has one."""

    def on_order_cancelled(session: Session, payload: dict[str, Any]) -> None:
        payment = service.settled_payment_of_order(session, payload["order_id"])
        if payment is None or payment.status is PaymentStatus.REFUNDED:
            return
        if payment.status is PaymentStatus.PROCESSING:
            raise PaymentInFlight(f"payment {payment.id} is still being charged")
        amount = service.reserve_refund(session, payment, None)
        reference = provider.refund(
            charge_reference=payment.provider_reference,
            amount_minor=amount,
            currency=payment.currency,
            reference=f"cancel-order-{payment.order_id}",
        )
        service.record_refund(session, payment.id, amount, reference)

    return on_order_cancelled
