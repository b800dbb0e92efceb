"""The order service, as the payment service sees it: through the service client."""

from __future__ import annotations

from pydantic import BaseModel

from app.kit.errors import ServiceUnavailable
from app.kit.peers import Peers


class OrderFacts(BaseModel):
    """What the order service tells other services about an order (money in cents)."""

    id: int
    userid: int
    amount_minor: int
    currency: str
    status: str


def read_order(peers: Peers, order_id: int) -> OrderFacts | None:
    """The order, or None if the order service has no such order."""
    reply = peers.call("order", "GET", f"/internal/orders/{order_id}", caller="payment")
    if reply.status == 404:
        return None
    if reply.status != 200:
        raise ServiceUnavailable(f"order service answered {reply.status}")
    return OrderFacts.model_validate(reply.data)
