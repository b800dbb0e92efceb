"""The order service's models, generated from its OpenAPI document by
tests/client/generate_models.py: do not edit."""
# ruff: noqa

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel


class Price(RootModel[float]):
    root: Annotated[float, Field(ge=0.01, le=1000000.0, title="Price")]
    """
    an amount with at most 2 decimals, as a number or a string
    """


class Price1(RootModel[str]):
    root: Annotated[
        str,
        Field(
            pattern="^(0\\.(0[1-9]|[1-9]\\d?)|[1-9]\\d{0,5}(\\.\\d{1,2})?|1000000(\\.00?)?)$",
            title="Price",
        ),
    ]
    """
    an amount with at most 2 decimals, as a number or a string
    """


class Userid(RootModel[str]):
    root: Annotated[str, Field(pattern="^[0-9]{1,18}$", title="Userid")] = None


class NewOrder(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    currency: Annotated[
        str | None,
        Field(max_length=3, min_length=3, pattern="^[A-Z]{3}$", title="Currency"),
    ] = "USD"
    price: Annotated[Price | Price1, Field(title="Price")]
    """
    an amount with at most 2 decimals, as a number or a string
    """
    product: Annotated[
        str,
        Field(
            max_length=200,
            min_length=1,
            pattern="[^\\s\\x1c-\\x1f\\x85\\ufeff]",
            title="Product",
        ),
    ]
    quantity: Annotated[int | None, Field(ge=1, le=1000, title="Quantity")] = 1
    userid: Annotated[int | Userid | None, Field(title="Userid")] = None


class OrderOut(BaseModel):
    amount: Annotated[float, Field(title="Amount")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    currency: Annotated[str, Field(title="Currency")]
    id: Annotated[int, Field(title="Id")]
    price: Annotated[float, Field(title="Price")]
    product: Annotated[str, Field(title="Product")]
    quantity: Annotated[int, Field(title="Quantity")]
    status: Annotated[
        Literal["pending", "paid", "cancelled", "refunded"], Field(title="OrderStatus")
    ]
    updated_at: Annotated[AwareDatetime, Field(title="Updated At")]
    userid: Annotated[int, Field(title="Userid")]


class OrderPage(BaseModel):
    items: Annotated[list[OrderOut], Field(title="Items")]
    next_cursor: Annotated[str | None, Field(title="Next Cursor")]
