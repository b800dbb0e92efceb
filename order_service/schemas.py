"""Request and response models of the order service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from app.kit.money import amount_of, money
from app.kit.pagination import PageQuery
from app.kit.responses import ResponseModel
from app.kit.validation import NOT_BLANK, RequestModel, integral, text, whole_number
from order_service.models import OrderStatus

MAX_PRICE_MINOR = 100_000_000  # 1,000,000.00


def _user_id(value: Any) -> int:
    value = integral(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdecimal() and value.isascii() and len(value) <= 18:
        return int(value)
    raise ValueError("must be an integer or a numeric string")


class NewOrder(RequestModel):
    product: text(
        min_length=1,
        max_length=200,
        pattern=NOT_BLANK,
        message="must be 1 to 200 characters, not all whitespace",
    )
    price: money(maximum=MAX_PRICE_MINOR)
    """In minor units once validated."""
    quantity: whole_number(minimum=1, maximum=1000) = 1
    currency: text(
        min_length=3,
        max_length=3,
        pattern=r"^[A-Z]{3}$",
        message="must be three capital letters A-Z, such as USD",
    ) = "USD"
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


class OrderOut(ResponseModel):
    id: int
    userid: int
    product: str
    price: amount_of("price_minor")
    quantity: int
    amount: amount_of("amount_minor")
    currency: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime


class OrderPage(ResponseModel):
    items: list[OrderOut]
    next_cursor: str | None


class OrderFacts(ResponseModel):
    """What another service may read of an order (internal route): money in minor units."""

    id: int
    userid: int
    amount_minor: int
    currency: str
    status: OrderStatus
