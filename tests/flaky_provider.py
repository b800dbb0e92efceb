"""A payment service whose provider times out on demand, as a real one can.

Mounted as ``MICROSHOP_SERVICES=...,payment=flaky_provider:create_app``."""

from __future__ import annotations

from flask import Flask

import payment_service
from app.kit.peers import Peers
from app.settings import Settings
from payment_service.providers import SandboxProvider


class FlakyProvider(SandboxProvider):
    """Times out while ``timing_out``; remembers charges by key, as real providers do."""

    def __init__(self) -> None:
        self.timing_out = False
        self.charges: dict[str, str] = {}

    def charge(self, *, amount_minor: int, currency: str, method: str, reference: str) -> str:
        if reference not in self.charges:
            self.charges[reference] = super().charge(
                amount_minor=amount_minor, currency=currency, method=method, reference=reference
            )
        if self.timing_out:  # the charge went through; the answer never came back
            raise TimeoutError("provider did not answer")
        return self.charges[reference]


made: list[FlakyProvider] = []
"""The providers handed out, newest last, for the test to steer."""


def create_app(settings: Settings, peers: Peers) -> Flask:
    made.append(FlakyProvider())
    return payment_service.create_app(settings, peers, provider=made[-1])
