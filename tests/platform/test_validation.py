"""Request parsing: 400 for what is not a JSON object, 422 naming every bad field."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from flask import Flask
from pydantic import ValidationError as PydanticValidationError

from app.kit.errors import InvalidJson, ValidationFailed
from app.kit.validation import (
    NOT_BLANK,
    RequestModel,
    parse,
    read_json_object,
    text,
    validate,
    whole_number,
)


class Product(RequestModel):
    name: text(min_length=1, max_length=10)
    note: text(max_length=5) | None = None


@pytest.fixture
def app() -> Flask:
    return Flask(__name__)


def test_a_valid_body_becomes_the_model(app: Flask):
    with app.test_request_context(json={"name": "pen"}):
        assert parse(Product) == Product(name="pen")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"  ",
        b"[]",
        b"1",
        b'"x"',
        b"{bad",
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b"\xc3\x28",
        b"[" * 3000,
    ],
)
def test_anything_but_a_json_object_is_invalid_json(app: Flask, raw: bytes):
    with app.test_request_context(data=raw), pytest.raises(InvalidJson):
        read_json_object()


def test_an_empty_body_is_an_empty_object_where_the_body_is_optional(app: Flask):
    with app.test_request_context(data=b""):
        assert read_json_object(optional=True) == {}
    with app.test_request_context(data=b"[]"), pytest.raises(InvalidJson):
        read_json_object(optional=True)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name": "is required"}),
        ({"name": ""}, {"name": "String should have at least 1 character"}),
        ({"name": "x" * 11}, {"name": "String should have at most 10 characters"}),
        ({"name": 5}, {"name": "Input should be a valid string"}),
        ({"name": "a\x00b"}, {"name": "must not contain NUL characters"}),
        (
            {"name": "a\ud800"},
            {
                "name": "Input should be a valid string, unable to parse raw "
                "data as a unicode string"
            },
        ),
        ({"name": "ok", "price": 1}, {"price": "is not a field of this request"}),
        (
            {"name": None, "note": "toolong"},
            {
                "name": "Input should be a valid string",
                "note": "String should have at most 5 characters",
            },
        ),
    ],
)
def test_every_offending_field_is_named(app: Flask, body: dict, fields: dict):
    with app.test_request_context(json=body), pytest.raises(ValidationFailed) as raised:
        parse(Product)
    assert raised.value.fields == fields
    assert raised.value.status == 422


class Line(RequestModel):
    quantity: whole_number(minimum=1, maximum=1000)


@pytest.mark.parametrize(
    ("value", "quantity"),
    [(5, 5), (Decimal("5.0"), 5), (Decimal("5E+2"), 500), (Decimal("1.000"), 1)],
)
def test_a_whole_number_may_be_written_with_a_zero_fraction(value, quantity: int):
    """JSON has one kind of number, and JSON Schema counts 5.0 as an integer."""
    assert Line.model_validate({"quantity": value}).quantity == quantity


@pytest.mark.parametrize(
    "value",
    [Decimal("5.5"), "5", True, None, Decimal("NaN"), Decimal("1E+999999"), 0, 1001],
)
def test_anything_else_is_not_a_whole_number(value):
    with pytest.raises(PydanticValidationError):
        Line.model_validate({"quantity": value})


def test_a_whole_number_is_documented_as_a_bounded_integer():
    schema = Line.model_json_schema()["properties"]["quantity"]
    assert schema == {"type": "integer", "minimum": 1, "maximum": 1000, "title": "Quantity"}


def test_the_document_says_a_text_field_refuses_nul():
    """PostgreSQL text cannot hold NUL, so the field refuses it and its schema says so."""
    schema = Product.model_json_schema()["properties"]["name"]
    assert re.search(schema["not"]["pattern"], "a\x00b")
    with pytest.raises(PydanticValidationError):
        Product.model_validate({"name": "a\x00b"})


ECMASCRIPT_WHITESPACE = {
    *"\t\n\v\f\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff",
    *map(chr, range(0x2000, 0x200B)),
}
"""``\\s`` of ECMAScript, the regex dialect of JSON Schema: WhiteSpace and LineTerminator."""


def test_not_blank_refuses_what_either_dialect_calls_whitespace_and_nothing_else():
    """Python's ``\\s`` and ECMAScript's differ (U+0085 is Python's alone, U+FEFF
    ECMAScript's alone): a client checking the documented pattern and the server must
    agree on every string, so the pattern refuses whitespace of either kind."""

    class Named(RequestModel):
        name: text(min_length=1, max_length=10, pattern=NOT_BLANK)

    python_whitespace = {chr(code) for code in range(0x110000) if chr(code).isspace()}
    refused = {chr(code) for code in range(0x110000) if not re.search(NOT_BLANK, chr(code))}
    assert refused == python_whitespace | ECMASCRIPT_WHITESPACE
    for blank in ("\x85", "\ufeff", " \x1c\t"):
        with pytest.raises(ValidationFailed):
            validate(Named, {"name": blank})
    assert validate(Named, {"name": " pen\x85"}).name == " pen\x85"
