"""Payment providers behind one small interface; the sandbox is the default.

    provider = SandboxProvider()
    charge = provider.charge(amount_minor=1999, currency="USD", method="tok_visa",
                             reference="payment-7")
    provider.refund(charge_reference=charge, amount_minor=500, currency="USD",
                    reference="refund-payment-7-1")

``reference`` is the provider-side idempotency key, so a retried call (after a crash)
charges or refunds once, and ``find_charge(reference=...)`` tells a reconciler whether a
charge was made under it. Plug in a real provider with
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
        """Refund part of a charge and return the provider's refund reference. Raise
        ``ProviderFailed`` only when nothing was refunded; any other exception means "not
        known", and the refund is made again later under the same ``reference``."""

    def find_charge(self, *, reference: str) -> str | None:
        """The reference of the charge made under ``reference``, or None if none was made.
        Raise when the provider cannot tell now; the reconciler asks again later."""


class SandboxProvider:
    """Stripe's test tokens: visa and mastercard pay, the others fail as their names say.

    It remembers its charges in this process's memory, as if each process had an account
    of its own: after a restart it knows of no earlier charge. A real provider answers
    ``find_charge`` for every process, across restarts."""

    METHODS = frozenset({"tok_visa", "tok_mastercard", "tok_chargeDeclined", "tok_processingError"})

    def __init__(self) -> None:
        self.charges: dict[str, str] = {}

    def accepts(self, method: str) -> bool:
        return method in self.METHODS

    def charge(self, *, amount_minor: int, currency: str, method: str, reference: str) -> str:
        if method == "tok_chargeDeclined":
            raise CardDeclined()
        if method == "tok_processingError":
            raise ProviderFailed("the payment provider could not process the charge")
        return self.charges.setdefault(
            reference, "ch_" + hashlib.sha256(reference.encode()).hexdigest()[:24]
        )

    def find_charge(self, *, reference: str) -> str | None:
        return self.charges.get(reference)

    def refund(
        self, *, charge_reference: str, amount_minor: int, currency: str, reference: str
    ) -> str:
        return "re_" + hashlib.sha256(reference.encode()).hexdigest()[:24]
