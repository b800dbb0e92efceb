"""Money as exact integer minor units (cents), from JSON in and back to JSON out.

    price: money(maximum=100_000_000)               # a request field: 0.01 to 1,000,000.00
    price: amount_of("price_minor")                 # a response field: 19.99 from 1999
    as_number(1999)                                 # 19.99

Request bodies are parsed with ``parse_float=Decimal``, so a JSON number never passes
through a float on the way in. Arithmetic is on integers only. On the way out,
``minor / 100`` is the double nearest the decimal value, and Python writes the shortest
text that reads back as that double: exactly the two-decimal number, for every amount
below 2^53 minor units.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

MINOR_PER_MAJOR = 100
_DECIMALS = 2
_DECIMAL_TEXT = re.compile(r"(0|[1-9]\d{0,14})(\.(?P<fraction>\d{1,15}))?")  # matched in full
_MAX_DIGITS = 17  # far above any bound in use; stops 1e999999 from costing time


def to_minor(value: Any) -> int:
    """An amount in minor units from a JSON number or a decimal string, exactly."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int):
        return value * MINOR_PER_MAJOR
    if isinstance(value, str):
        text = _DECIMAL_TEXT.fullmatch(value)
        if not text:
            raise ValueError("must be a decimal number such as 19.99")
        if len(text["fraction"] or "") > _DECIMALS:  # as written: "1.50" yes, "1.500" no
            raise ValueError(f"must have at most {_DECIMALS} decimals")
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise ValueError("must be a number or a decimal string")
    if not value.is_finite():
        raise ValueError("must be a finite number")
    sign, digits, exponent = value.as_tuple()
    while exponent < 0 and digits[-1] == 0:  # 1.50 has 1 decimal, 0.000 none
        digits, exponent = digits[:-1] or (0,), exponent + 1
    if exponent < -_DECIMALS:
        raise ValueError(f"must have at most {_DECIMALS} decimals")
    if len(digits) + exponent > _MAX_DIGITS:
        raise ValueError("is too large")
    minor = int("".join(map(str, digits))) * 10 ** (exponent + _DECIMALS)
    return -minor if sign else minor


def as_number(minor: int) -> float:
    """The JSON number for an amount in minor units (see the module docstring)."""
    return minor / MINOR_PER_MAJOR


def amount_of(minor_attribute: str) -> Any:
    """A response field (``app.kit.responses.ResponseModel``): the amount a row keeps in
    minor units under ``minor_attribute``, as a JSON number."""
    return Annotated[float, BeforeValidator(as_number), Field(validation_alias=minor_attribute)]


def _shown(minor: int) -> str:
    return f"{Decimal(minor).scaleb(-_DECIMALS):,.2f}"


def _text_pattern(maximum: int) -> str:
    """The strings of amounts from one minor unit up to ``maximum``, exactly as ``to_minor``
    and the bounds take them (no leading zeros, at most 2 decimals), so that a generated
    client can tell a valid amount from its schema alone."""
    whole = Decimal(maximum).scaleb(-_DECIMALS)
    digits = len(str(whole.to_integral_value())) - 1
    if maximum < MINOR_PER_MAJOR or whole != Decimal(10) ** digits:
        raise ValueError(f"the maximum must be a power of ten major units, not {_shown(maximum)}")
    cents = r"0\.(0[1-9]|[1-9]\d?)"
    units = [rf"[1-9]\d{{0,{digits - 1}}}(\.\d{{1,2}})?"] if digits else []
    top = rf"1{'0' * digits}(\.00?)?"
    return "^(" + "|".join([cents, *units, top]) + ")$"


def money(*, maximum: int) -> Any:
    """A request field holding an amount of one minor unit up to ``maximum`` (in minor units,
    a power of ten major units), validated to minor units."""
    pattern = _text_pattern(maximum)

    def check(value: Any) -> int:
        minor = to_minor(value)
        if not 1 <= minor <= maximum:
            raise ValueError(f"must be between {_shown(1)} and {_shown(maximum)}")
        return minor

    on_the_wire = {  # what a client sends; the model holds minor units
        "anyOf": [
            {
                "type": "number",
                "minimum": 1 / MINOR_PER_MAJOR,
                "maximum": maximum // MINOR_PER_MAJOR,
            },
            {"type": "string", "pattern": pattern},
        ],
        "description": f"an amount with at most {_DECIMALS} decimals, as a number or a string",
    }
    return Annotated[int, BeforeValidator(check), WithJsonSchema(on_the_wire)]
