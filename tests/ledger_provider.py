"""A payment provider with a ledger on disk, as a real provider keeps its own, which can be
made to stall after it acted: for tests that SIGKILL the server mid-charge or mid-refund.

Mounted as ``MICROSHOP_SERVICES=user,order,payment=ledger_provider:create_app`` with
``LEDGER_PROVIDER_DIR`` naming its folder. Each charge and refund is a line of
``ledger.jsonl`` there, with the id of the process that made it; while a file ``stall``
exists (or ``stall-<process id>``, to stall one process of several sharing the ledger), a
call writes its line and then waits, as if the answer were lost."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask

import payment_service
from app.kit.peers import Peers
from app.settings import Settings
from payment_service.providers import SandboxProvider


class LedgerProvider(SandboxProvider):
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder
        self.lock = threading.Lock()

    def charge(self, *, amount_minor: int, currency: str, method: str, reference: str) -> str:
        charge = super().charge(
            amount_minor=amount_minor, currency=currency, method=method, reference=reference
        )
        return self._write("charge", reference, charge)

    def refund(
        self, *, charge_reference: str, amount_minor: int, currency: str, reference: str
    ) -> str:
        refund = super().refund(
            charge_reference=charge_reference,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
        )
        return self._write("refund", reference, refund, amount_minor=amount_minor)

    def find_charge(self, *, reference: str) -> str | None:
        charges = [e for e in entries(self.folder) if e["kind"] == "charge"]
        return next((e["result"] for e in charges if e["reference"] == reference), None)

    def _write(self, kind: str, reference: str, result: str, **extra: Any) -> str:
        line = json.dumps(
            {"kind": kind, "reference": reference, "result": result, "pid": os.getpid(), **extra}
        )
        with self.lock, (self.folder / "ledger.jsonl").open("a") as ledger:
            ledger.write(line + "\n")
            ledger.flush()
            os.fsync(ledger.fileno())
        while (self.folder / "stall").exists() or (self.folder / f"stall-{os.getpid()}").exists():
            time.sleep(0.05)
        return result


def entries(folder: Path) -> list[dict[str, Any]]:
    """What the provider did, oldest first."""
    ledger = folder / "ledger.jsonl"
    return [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []


def create_app(settings: Settings, peers: Peers) -> Flask:
    folder = Path(os.environ["LEDGER_PROVIDER_DIR"])
    return payment_service.create_app(settings, peers, provider=LedgerProvider(folder))
