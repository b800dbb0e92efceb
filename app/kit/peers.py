"""The other services, as a service calls them: the interface the runtime's client fills.

    reply = peers.call("order", "GET", f"/internal/orders/{order_id}", caller="payment")
    reply.status, reply.data                # 200, {"id": 7, "userid": 3, ...}

A service that calls others names ``peers`` in its factory's signature
(``create_app(settings=None, peers=None)``) and the composition hands it the process's
service client (``app.runtime.service_client``), which reaches a mounted service through
its WSGI callable and any other at its ``MICROSHOP_<NAME>_URL``. A service built on its
own, with no peers, reaches none: every call is a 503 ``service_unavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from app.kit.errors import ServiceUnavailable


@dataclass(frozen=True)
class Reply:
    status: int
    data: dict[str, Any]


class Peers(Protocol):
    def call(
        self, service: str, method: str, path: str, *, caller: str, json_body: Any = None
    ) -> Reply:
        """Call ``path`` of ``service`` with a service token; 503 if it cannot be reached."""
        ...


class NoPeers:
    """The peers of a service built on its own: none is reachable."""

    def call(
        self, service: str, method: str, path: str, *, caller: str, json_body: Any = None
    ) -> Reply:
        raise ServiceUnavailable(f"{service} service is not configured")
