"""Request and response models of the order service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, WithJsonSchema

from app.kit.money import as_number, money
from app.kit.pagination import PageQuery
from app.kit.validation import RequestModel, integral, text, whole_number
from order_service.models import Order, OrderStatus

MAX_PRICE_MINOR = 100_000_000  # 1,000,000.00


def _user_id(value: Any) -> int:
    value = integral(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdecimal() and value.isascii() and len(value) <= 18:
        return int(value)
    raise ValueError("must be an integer or a numeric string")


class NewOrder(RequestModel):
    product: text(min_length=1, max_length=200, pattern=r"\S")
    price: money(maximum=MAX_PRICE_MINOR)
    """In minor units once validated."""
    quantity: whole_number(minimum=1, maximum=1000) = 1
    currency: text(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$") = "USD"
    userid: (
        Annotated[
            int,
            BeforeValidator(_user_id),
            WithJsonSchema(
                {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]{1,18}$"}]}
            ),
        ]
        | None
    ) = None


class OrderQuery(PageQuery):
    status: OrderStatus | None = None


class OrderOut(BaseModel):
    id: int
    userid: int
    product: str
    price: float
    quantity: int
    amount: float
    currency: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            id=order.id,
            userid=order.userid,
            product=order.product,
            price=as_number(order.price_minor),
            quantity=order.quantity,
            amount=as_number(order.amount_minor),
            currency=order.currency,
            status=order.status,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class OrderFacts(BaseModel):
    """What another service may read of an order (internal route): money in minor units."""

    id: int
    userid: int
    amount_minor: int
    currency: str
    status: OrderStatus

    @classmethod
    def of(cls, order: Order) -> OrderFacts:
        return cls(
            id=order.id,
            userid=order.userid,
            amount_minor=order.amount_minor,
            currency=order.currency,
            status=order.status,
        )
