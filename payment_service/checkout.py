"""Paying and refunding, step by step: each step one short transaction (see service.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.auth import Caller
from app.platform import Platform
from payment_service import service
from payment_service.models import Payment, Refund
from payment_service.orders import read_order
from payment_service.providers import CardDeclined, PaymentProvider, ProviderFailed
from payment_service.schemas import NewPayment


@dataclass
class Checkout:
    platform: Platform
    provider: PaymentProvider

    def pay(self, caller: Caller, form: NewPayment) -> Payment:
        """Charge the order's amount once; a failed attempt is recorded and raised."""
        order = service.check_payable(read_order(self.platform.peers, form.order_id), caller)
        units = self.platform.database.unit_of_work
        with units() as session:
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
            with units() as session:
                service.fail_payment(session, payment_id, refusal.message)
            raise
        # Any other failure (a timeout, say) leaves it unknown whether money moved: the
        # reservation stays, and the next attempt resumes it under the same provider key.
        with units() as session:
            return service.settle_payment(session, payment_id, reference)

    def refund(self, caller: Caller, payment_id: int, amount_minor: int | None) -> Refund:
        """Refund part or all of what is left; never more, whatever runs at the same time."""
        units = self.platform.database.unit_of_work
        with units() as session:
            payment = service.visible_payment(session, caller, payment_id)
            amount = service.reserve_refund(session, payment, amount_minor)
            charge, currency = payment.provider_reference, payment.currency
        try:
            reference = self.provider.refund(
                charge_reference=charge,
                amount_minor=amount,
                currency=currency,
                reference=f"refund-{payment_id}-{uuid.uuid4().hex}",
            )
        except Exception:
            with units() as session:
                service.release_refund(session, payment_id, amount)
            raise
        with units() as session:
            return service.record_refund(session, payment_id, amount, reference)
