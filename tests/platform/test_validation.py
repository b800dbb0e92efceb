"""Request parsing: 400 for what is not a JSON object, 422 naming every bad field."""

from __future__ import annotations

import re
from decimal import Decimal
from unittest.mock import ANY

import flask_restful
import pytest
from flask import Flask, Response
from pydantic import ValidationError as PydanticValidationError

from app.kit.api import JsonApi, Resource
from app.kit.errors import InvalidJson, ValidationFailed
from app.kit.openapi import operation
from app.kit.pagination import PageQuery
from app.kit.responses import ok
from app.kit.validation import (
    NOT_BLANK,
    RequestModel,
    parse,
    parse_query,
    read_json_object,
    text,
    validate,
    whole_number,
)
from app.kit.web import init_web


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


# --- what a client sends that no route would read ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"product": "pen", "price": 1, "price": 2}', "price"),
        (b'{"order_id": 22, "order_id": 99999}', "order_id"),
        (b'{"a": {"b": 1, "b": 1}}', "b"),
        (b'{"a": [1, {"c": {"d": [{"e": 1, "e": 2}]}}]}', "e"),
    ],
)
def test_a_repeated_key_is_invalid_json_naming_it(app: Flask, raw: bytes, key: str):
    """json.loads keeps the last of two values: the client meant one of them, we cannot
    know which, so neither is applied."""
    with app.test_request_context(data=raw), pytest.raises(InvalidJson) as raised:
        read_json_object()
    assert f'"{key}"' in raised.value.message
    assert "more than once" in raised.value.message


@pytest.mark.parametrize("raw", [b" ", b"\n", b"\t\r\n ", b'" "', b"null"])
def test_only_an_empty_body_is_an_empty_object_where_the_body_is_optional(app: Flask, raw):
    with app.test_request_context(data=raw), pytest.raises(InvalidJson):
        read_json_object(optional=True)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "request body is empty: send a JSON object"),
        (b" \n", "request body is only whitespace: send a JSON object"),
        (b"{bad", "request body is not valid JSON: Expecting property name"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": "\xff"}', "request body is not UTF-8 text"),
        (_nested(10_000), "request body nests objects or arrays more than 100 deep"),
        (_nested(101), "request body nests objects or arrays more than 100 deep"),
        (b"[" * 20_000, "request body nests objects or arrays more than 100 deep"),
        (b'{"a": ' + b"9" * 5000 + b"}", "a number in the request body has more than 4300 digits"),
        (b"[]", "request body must be a JSON object, not an array"),
        (b'"x"', "request body must be a JSON object, not a string"),
        (b"1.5", "request body must be a JSON object, not a number"),
        (b"null", "request body must be a JSON object, not null"),
        (b"true", "request body must be a JSON object, not true"),
    ],
)
def test_invalid_json_says_what_is_wrong(app: Flask, raw: bytes, words: str):
    with app.test_request_context(data=raw), pytest.raises(InvalidJson) as raised:
        read_json_object()
    assert words in raised.value.message


def test_an_object_100_deep_is_read(app: Flask):
    with app.test_request_context(data=_nested(99)):
        assert read_json_object()["a"]["a"]["a"]


class Handle(RequestModel):
    handle: text(min_length=3, max_length=8, pattern=r"^[a-z]+$", message="must be 3 to 8 of a-z")


@pytest.mark.parametrize("value", ["a!", "ab", "abcdefghi", "ABC", " abc"])
def test_a_text_with_a_message_says_its_rule_for_any_length_or_pattern_failure(value: str):
    """A pattern means nothing to most clients, and pydantic names only the first broken
    constraint: ``a!`` is too short and has a ``!``, so the message says the whole rule."""
    with pytest.raises(ValidationFailed) as raised:
        validate(Handle, {"handle": value})
    assert raised.value.fields == {"handle": "must be 3 to 8 of a-z"}


def test_a_text_with_a_message_keeps_the_other_messages_and_its_document():
    with pytest.raises(ValidationFailed) as raised:
        validate(Handle, {"handle": 5})
    assert raised.value.fields == {"handle": "Input should be a valid string"}
    schema = Handle.model_json_schema()["properties"]["handle"]
    assert (schema["minLength"], schema["maxLength"], schema["pattern"]) == (3, 8, "^[a-z]+$")


class Things(Resource):
    @operation(query=PageQuery, responses={200: None}, auth=False)
    def get(self) -> Response:
        """Every thing."""
        return ok(parse_query(PageQuery).model_dump())

    @operation(body=Product, responses={201: None}, auth=False)
    def post(self) -> Response:
        """Make a thing."""
        return ok(parse(Product).model_dump())


class Thing(Resource):
    @operation(responses={200: None}, auth=False)
    def get(self, thing_id: int) -> Response:
        """One thing."""
        return ok({"id": thing_id})

    def delete(self, thing_id: int) -> Response:
        """Undocumented: not a route of the API, so left as it is."""
        return ok({"id": thing_id})


@pytest.fixture
def things() -> Flask:
    app = Flask("things")
    init_web(app)
    api = JsonApi(app)
    api.route(Things, "/things")
    api.route(Thing, "/things/<id:thing_id>", legacy={"/thing/<id:thing_id>": "GET"})
    return app


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "fields"),
    [
        ("GET", "/things/1?x=1", {}, {"x": "is not a field of this request"}),
        ("GET", "/thing/1?x=1&y=", {}, {"x": "is not a field of this request", "y": ANY}),
        ("GET", "/things/1", {"json": {}}, {"body": "this request takes no body"}),
        ("GET", "/things/1", {"data": b" "}, {"body": "this request takes no body"}),
        ("GET", "/things?limit=5", {"json": {"a": 1}}, {"body": "this request takes no body"}),
        ("POST", "/things?x=1", {"json": {"name": "pen"}}, {"x": ANY}),
        ("GET", "/things?page=2", {}, {"page": "is not a field of this request"}),
    ],
)
def test_what_a_route_does_not_declare_is_a_422_naming_it(
    things: Flask, method: str, path: str, kwargs: dict, fields: dict
):
    reply = things.test_client().open(path, method=method, **kwargs)
    assert reply.status_code == 422, reply.text
    assert reply.json["data"]["fields"] == fields


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/things/1", {}),
        ("HEAD", "/things/1", {}),
        ("GET", "/things/1?", {}),
        ("GET", "/things/1", {"headers": {"Content-Type": "application/json"}}),
        ("GET", "/things?limit=5", {}),
        ("POST", "/things", {"json": {"name": "pen"}}),
        ("DELETE", "/things/1?x=1", {"json": {}}),
    ],
)
def test_what_a_route_declares_is_taken(things: Flask, method: str, path: str, kwargs: dict):
    assert things.test_client().open(path, method=method, **kwargs).status_code == 200


def test_only_a_resource_of_the_kit_is_routed():
    class Plain(flask_restful.Resource):
        def get(self) -> Response:
            return ok()

    with pytest.raises(TypeError, match="Plain"):
        JsonApi(Flask("plain")).route(Plain, "/plain")
