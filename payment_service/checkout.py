"""Paying and refunding, step by step: each step one short unit of work (``service.py``),
and the provider called between them, never inside one.

    checkout = Checkout(peers, SandboxProvider())
    checkout.pay(caller, form)              # POST /payment/
    checkout.refund(caller, 7, 500)         # POST /payment/7/refund
    checkout.refund_cancelled_order(3, handling)    # order.cancelled (events.py)
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from app.kit.auth import Caller
from app.kit.events import Handling, RetryLater
from app.kit.peers import Peers
from app.kit.service import unit_of_work
from payment_service import service
from payment_service.errors import CardDeclined, ProviderFailed
from payment_service.models import Payment, PaymentStatus, Refund
from payment_service.orders import read_order
from payment_service.providers import PaymentProvider
from payment_service.schemas import NewPayment

log = logging.getLogger("microshop.payments")


@dataclass
class Checkout:
    peers: Peers
    provider: PaymentProvider

    def pay(self, caller: Caller, form: NewPayment) -> Payment:
        """Charge the order's amount once; a failed attempt is recorded and raised."""
        order = service.check_payable(read_order(self.peers, form.order_id), caller)
        with unit_of_work() as session:
            reserved = service.reserve_payment(session, caller, order, form.payment_method)
            payment_id, method = reserved.id, reserved.method  # a resumed one keeps its own
        try:
            reference = self.provider.charge(
                amount_minor=order.amount_minor,
                currency=order.currency,
                method=method,
                reference=f"payment-{payment_id}",
            )
        except (CardDeclined, ProviderFailed) as refusal:  # the provider says: not charged
            with unit_of_work() as session:
                service.fail_payment(session, payment_id, refusal.message)
            raise
        # Any other failure (a timeout, say) leaves it unknown whether money moved: the
        # reservation stays, and the next attempt resumes it under the same provider key.
        with unit_of_work() as session:
            return service.settle_payment(session, payment_id, reference)

    def refund(self, caller: Caller, payment_id: int, amount_minor: int | None) -> Refund:
        """Refund part or all of what is left; never more, whatever runs at the same time."""
        with unit_of_work() as session:
            payment = service.visible_payment(session, caller, payment_id)
            amount = service.reserve_refund(session, payment, amount_minor)
            charge, currency = payment.provider_reference, payment.currency
        reference = self._refund_at_provider(
            payment_id, charge, amount, currency, f"refund-{payment_id}-{uuid.uuid4().hex}"
        )
        with unit_of_work() as session:
            return service.record_refund(session, payment_id, amount, reference)

    def refund_cancelled_order(self, order_id: int, handling: Handling) -> None:
        """``order.cancelled``: refund all that is left of the order's payment, if it has
        one. The provider's key is ``cancel-order-<id>``, so a retried event refunds once;
        the refund is recorded in the handler's transaction, with its inbox row."""
        with unit_of_work() as session:
            payment = service.settled_payment_of_order(session, order_id)
            if payment is None or payment.status is PaymentStatus.REFUNDED:
                return
            if payment.status is PaymentStatus.PROCESSING:
                raise RetryLater(f"payment {payment.id} is still being charged")
            if payment.remaining_minor == 0:
                raise RetryLater(f"a refund of payment {payment.id} is under way")
            amount = service.reserve_refund(session, payment, None)
            payment_id, charge, currency = payment.id, payment.provider_reference, payment.currency
        try:
            reference = self._refund_at_provider(
                payment_id, charge, amount, currency, f"cancel-order-{order_id}"
            )
        except Exception as error:  # released: the next delivery tries again
            log.warning(
                "refund of payment %s for cancelled order %s failed at the provider (%s: %s)",
                payment_id,
                order_id,
                type(error).__name__,
                error,
            )
            raise RetryLater(f"the provider did not refund payment {payment_id}") from error
        with handling() as session:
            service.record_refund(session, payment_id, amount, reference)

    def _refund_at_provider(
        self, payment_id: int, charge: str, amount: int, currency: str, reference: str
    ) -> str:
        """The provider's refund of a counted ``amount``; if it fails, it no longer counts."""
        try:
            return self.provider.refund(
                charge_reference=charge,
                amount_minor=amount,
                currency=currency,
                reference=reference,
            )
        except Exception:
            with unit_of_work() as session:
                service.release_refund(session, payment_id, amount)
            raise
