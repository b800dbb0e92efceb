"""The order service's own errors; the slugs it answers are all the platform's
(``app.kit.errors``: 403, 404)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from order_service.models import Order, OrderStatus


class IllegalTransition(Exception):
    """A status change the lifecycle does not allow; callers decide what it means to them."""

    def __init__(self, order: Order, target: OrderStatus):
        super().__init__(f"order {order.id} cannot go from {order.status} to {target}")
