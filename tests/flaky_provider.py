"""A payment service whose provider times out on demand, as a real one can.

Mounted as ``MICROSHOP_SERVICES=...,payment=flaky_provider:create_app``."""

from __future__ import annotations

from flask import Flask

import payment_service
from app.kit.peers import Peers
from app.settings import Settings
from payment_service.providers import SandboxProvider


class FlakyProvider(SandboxProvider):
    """Times out while ``timing_out``, after charging or refunding: the answer never comes
    back. While ``unreachable``, a charge never reaches it. Remembers the keys of the
    refunds it made."""

    def __init__(self) -> None:
        super().__init__()
        self.timing_out = False
        self.unreachable = False
        self.refunds: list[str] = []

    def charge(self, *, amount_minor: int, currency: str, method: str, reference: str) -> str:
        if self.unreachable:
            raise ConnectionError("the provider could not be reached")
        charge = super().charge(
            amount_minor=amount_minor, currency=currency, method=method, reference=reference
        )
        return self._answer(charge)

    def refund(
        self, *, charge_reference: str, amount_minor: int, currency: str, reference: str
    ) -> str:
        self.refunds.append(reference)
        refund = super().refund(
            charge_reference=charge_reference,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
        )
        return self._answer(refund)

    def _answer(self, reference: str) -> str:
        if self.timing_out:
            raise TimeoutError("provider did not answer")
        return reference


made: list[FlakyProvider] = []
"""The providers handed out, newest last, for the test to steer."""


def create_app(settings: Settings, peers: Peers) -> Flask:
    made.append(FlakyProvider())
    return payment_service.create_app(settings, peers, provider=made[-1])
