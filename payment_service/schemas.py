"""Request and response models of the payment service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from app.kit.database import MAX_ID
from app.kit.money import amount_of, money
from app.kit.pagination import PageQuery
from app.kit.responses import ResponseModel
from app.kit.validation import RequestModel, text, whole_number


class NewPayment(RequestModel):
    """Validated with ``context={"accepts": provider.accepts}``: a method the provider does
    not know is named together with every other bad field."""

    order_id: whole_number(minimum=1, maximum=MAX_ID)
    payment_method: text(
        min_length=1,
        max_length=64,
        pattern=r"^tok_[A-Za-z0-9_]+$",
        message="must be a card token of at most 64 characters, such as tok_visa",
    ) = "tok_visa"

    @field_validator("payment_method")
    @classmethod
    def _accepted(cls, method: str, info: ValidationInfo) -> str:
        if not info.context["accepts"](method):
            raise ValueError("is not a payment method we accept")
        return method


class RefundRequest(RequestModel):
    amount: money(maximum=10**13) | None = None
    """In minor units once validated; None refunds all that is left."""


class PaymentQuery(PageQuery):
    order_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class PaymentOut(ResponseModel):
    id: int
    order_id: int
    userid: int
    amount: amount_of("amount_minor")
    currency: str
    status: str
    refunded_amount: amount_of("refunded_minor")
    created_at: datetime


class PaymentPage(ResponseModel):
    items: list[PaymentOut]
    next_cursor: str | None


class RefundOut(ResponseModel):
    id: int
    payment_id: int
    amount: amount_of("amount_minor")
    created_at: datetime
