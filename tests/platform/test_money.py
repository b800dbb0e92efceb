"""A money field's documented schema says exactly which strings and numbers it accepts."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from app.kit.money import money

MAXIMA = [100, 100_000_000, 10**13]  # 1.00, the largest price, the largest refund
DECIMALISH = st.from_regex(r"\A-?[0-9]{0,17}(\.[0-9]{0,17})?\Z") | st.text(max_size=20)


def _accepts(field: TypeAdapter, value: object) -> bool:
    try:
        field.validate_python(value)
    except ValidationError:
        return False
    return True


def _string_pattern(field: TypeAdapter) -> str:
    (string,) = [branch for branch in field.json_schema()["anyOf"] if branch["type"] == "string"]
    return string["pattern"]


@pytest.mark.parametrize("maximum", MAXIMA)
@settings(max_examples=400, deadline=None)
@given(text=DECIMALISH)
@example(text="0")
@example(text="0.00")
@example(text="0.01")
@example(text="007")
@example(text="1.500")
@example(text="1.5" + "0" * 20)
@example(text="1.001")
@example(text="1000000")
@example(text="1000000.00")
@example(text="1000000.01")
@example(text="100000000000")
@example(text="1\n")
def test_the_documented_pattern_admits_exactly_the_strings_the_field_accepts(maximum, text):
    field = TypeAdapter(money(maximum=maximum))
    pattern = _string_pattern(field)
    assert pattern.startswith("^")  # anchored in any dialect
    assert pattern.endswith("$")
    documented = re.fullmatch(pattern[1:-1], text) is not None
    assert documented == _accepts(field, text), (pattern, text)


@pytest.mark.parametrize("maximum", MAXIMA)
@settings(max_examples=200, deadline=None)
@given(minor=st.integers(min_value=-10, max_value=10**14))
@example(minor=-1)
@example(minor=0)
@example(minor=1)  # 0.01: the float 0.01 in the schema is a shade above Decimal("0.01")
@example(minor=2)
@example(minor=MAXIMA[0] - 1)
@example(minor=MAXIMA[0])
@example(minor=MAXIMA[0] + 1)
@example(minor=MAXIMA[1] - 1)
@example(minor=MAXIMA[1])
@example(minor=MAXIMA[1] + 1)
@example(minor=MAXIMA[2] - 1)
@example(minor=MAXIMA[2])
@example(minor=MAXIMA[2] + 1)
def test_a_number_is_accepted_exactly_within_the_documented_bounds(maximum, minor):
    field = TypeAdapter(money(maximum=maximum))
    (number,) = [branch for branch in field.json_schema()["anyOf"] if branch["type"] == "number"]
    value = Decimal(minor).scaleb(-2)  # a JSON number as the request parser reads it
    # the bounds as the JSON text a client reads ("0.01"), not as the nearest binary float
    documented = Decimal(str(number["minimum"])) <= value <= Decimal(str(number["maximum"]))
    assert documented == _accepts(field, value)
    if documented:
        assert field.validate_python(value) == minor


def test_only_a_positive_power_of_ten_may_bound_an_amount():
    with pytest.raises(ValueError, match="power of ten"):
        money(maximum=150)
