"""Payment providers behind one small interface; the sandbox is the default.

    provider = SandboxProvider()
    charge = provider.charge(amount_minor=1999, currency="USD", method="tok_visa",
                             reference="payment-7")
    provider.refund(charge_reference=charge, amount_minor=500, currency="USD",
                    reference="refund-payment-7-1")

``reference`` is the provider-side idempotency key, so a retried call (after a crash)
charges or refunds once. Plug in a real provider with
``payment_service.create_app(settings, provider=YourProvider())``.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from payment_service.errors import CardDeclined, ProviderFailed


class PaymentProvider(Protocol):
    def accepts(self, method: str) -> bool:
        """Whether ``method`` names a payment method this provider knows."""

    def charge(self, *, amount_minor: int, currency: str, method: str, reference: str) -> str:
        """Charge and return the provider's charge reference. Raise ``CardDeclined`` or
        ``ProviderFailed`` only when nothing was charged; any other exception means "not
        known", and the charge is retried later under the same ``reference``."""

    def refund(
        self, *, charge_reference: str, amount_minor: int, currency: str, reference: str
    ) -> str:
        """Refund part of a charge and return the provider's refund reference."""


class SandboxProvider:
    """Stripe's test tokens: visa and mastercard pay, the others fail as their names say."""

    METHODS = frozenset({"tok_visa", "tok_mastercard", "tok_chargeDeclined", "tok_processingError"})

    def accepts(self, method: str) -> bool:
        return method in self.METHODS

    def charge(self, *, amount_minor: int, currency: str, method: str, reference: str) -> str:
        if method == "tok_chargeDeclined":
            raise CardDeclined()
        if method == "tok_processingError":
            raise ProviderFailed("the payment provider could not process the charge")
        return "ch_" + hashlib.sha256(reference.encode()).hexdigest()[:24]

    def refund(
        self, *, charge_reference: str, amount_minor: int, currency: str, reference: str
    ) -> str:
        return "re_" + hashlib.sha256(reference.encode()).hexdigest()[:24]
