"""The payment service's models, generated from its OpenAPI document by
tests/client/generate_models.py: do not edit."""
# ruff: noqa

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel


class NewPayment(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    order_id: Annotated[int, Field(ge=1, le=2147483647, title="Order Id")]
    payment_method: Annotated[
        str | None,
        Field(
            max_length=64,
            min_length=1,
            pattern="^tok_[A-Za-z0-9_]+$",
            title="Payment Method",
        ),
    ] = "tok_visa"


class PaymentOut(BaseModel):
    amount: Annotated[float, Field(title="Amount")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    currency: Annotated[str, Field(title="Currency")]
    id: Annotated[int, Field(title="Id")]
    order_id: Annotated[int, Field(title="Order Id")]
    refunded_amount: Annotated[float, Field(title="Refunded Amount")]
    status: Annotated[str, Field(title="Status")]
    userid: Annotated[int, Field(title="Userid")]


class PaymentPage(BaseModel):
    items: Annotated[list[PaymentOut], Field(title="Items")]
    next_cursor: Annotated[str | None, Field(title="Next Cursor")]


class RefundOut(BaseModel):
    amount: Annotated[float, Field(title="Amount")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    id: Annotated[int, Field(title="Id")]
    payment_id: Annotated[int, Field(title="Payment Id")]


class Amount(RootModel[float]):
    root: Annotated[float, Field(ge=0.01, le=100000000000.0, title="Amount")] = None
    """
    an amount with at most 2 decimals, as a number or a string
    """


class Amount1(RootModel[str]):
    root: Annotated[
        str,
        Field(
            pattern="^(0\\.(0[1-9]|[1-9]\\d?)|[1-9]\\d{0,10}(\\.\\d{1,2})?|100000000000(\\.00?)?)$",
            title="Amount",
        ),
    ] = None
    """
    an amount with at most 2 decimals, as a number or a string
    """


class RefundRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    amount: Annotated[Amount | Amount1 | None, Field(title="Amount")] = None
