"""Request bodies parsed into pydantic models, with the envelope's 400 and 422 on bad input.

    class NewUser(RequestModel):
        username: text(min_length=3, max_length=32, pattern=r"^[a-z]+$")

    form = parse(NewUser)                   # 400 invalid_json / 422 naming each bad field
    query = parse_query(OrderQuery)         # the query string, by the same rules
    refuse_undeclared_input(takes_body=False, takes_query=False)   # 422 naming what came

Request models forbid unknown fields, a repeated JSON key is refused, and a route refuses
a body or query it does not take (``app.kit.api.Resource`` calls
``refuse_undeclared_input``), so nothing a client sends is silently ignored.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from flask import request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    conint,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from app.kit.errors import InvalidJson, ValidationFailed

Model = TypeVar("Model", bound="RequestModel")


def _without_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL (pydantic itself refuses lone surrogates)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


_NO_NUL = Field(json_schema_extra={"not": {"pattern": "\\x00"}})
"""What ``_without_nul`` refuses, said in the document too."""


NOT_BLANK = r"[^\s\x1c-\x1f\x85\ufeff]"
"""A ``text`` pattern for "not only whitespace", read alike by Python and by ECMAScript
(the regex dialect of JSON Schema): their ``\\s`` differ by U+001C to U+001F and U+0085
(Python's alone) and U+FEFF (ECMAScript's alone), so none of those counts either."""


_CONSTRAINTS = {"string_too_short", "string_too_long", "string_pattern_mismatch"}


def _stating(message: str) -> WrapValidator:
    """Any broken length or pattern constraint told as ``message``, the whole rule: pydantic
    names only the first (``a!`` is "too short", not also "has a !") and shows a pattern as
    a regex, which means nothing to most clients."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except PydanticValidationError as error:
            if {item["type"] for item in error.errors()} <= _CONSTRAINTS:
                raise PydanticCustomError("text_rule", message) from None
            raise

    return WrapValidator(check)


def text(
    *,
    min_length: int = 0,
    max_length: int,
    pattern: str | None = None,
    message: str | None = None,
) -> Any:
    """A bounded string field that any database can store and argon2 can hash.

    ``message``: what a value of the wrong length or shape is told (``"must be 3 to 32
    letters"``); without it, pydantic's own words for the first broken constraint."""
    constraints = StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)
    stated = (_stating(message),) if message is not None else ()
    return Annotated[str, constraints, *stated, AfterValidator(_without_nul), _NO_NUL]


def integral(value: Any) -> Any:
    """``5.0`` as the integer 5: JSON has one kind of number, and JSON Schema counts it as an
    integer. Strings stay strings, and huge exponents are left for the bounds to refuse."""
    is_whole = isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 19
    return int(value) if is_whole and value == value.to_integral_value() else value


def whole_number(*, minimum: int, maximum: int) -> Any:
    """A bounded integer field of a JSON body: ``5`` or ``5.0``, never ``"5"`` or ``true``."""
    return Annotated[conint(strict=True, ge=minimum, le=maximum), BeforeValidator(integral)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


_NOT_A_FIELD = "is not a field of this request"
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": _NOT_A_FIELD,
}


def field_errors(error: PydanticValidationError) -> dict[str, str]:
    """One message per offending field, keyed by its dotted path."""
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]) or "body"
        message = _MESSAGES.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        fields.setdefault(name, message)
    return fields


MAX_DEPTH = 100
"""How deep objects and arrays may nest in a body. No route reads deeper than 2; the limit
makes the refusal the same everywhere, where Python's own (its recursion limit, less the
stack already in use) would depend on the server."""
MAX_DIGITS = 4300
"""The longest integer read, as Python's ``int`` reads by default."""
_KINDS = {list: "an array", str: "a string", int: "a number", Decimal: "a number"}


class _Unreadable(ValueError):
    """Refused while decoding; the message is for the client."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; one that repeats a key is refused, at any depth: the client meant one
    of its values, and which one is unknowable (``json`` would keep the last)."""
    body = dict(pairs)
    if len(body) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Unreadable(f"request body gives the key {json.dumps(key)} more than once")
            seen.add(key)
    return body


def _constant(name: str) -> Any:
    raise _Unreadable(f"request body is not valid JSON: {name} is not a JSON number")


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise _Unreadable(f"a number in the request body has more than {MAX_DIGITS} digits")
    return int(digits)


def _nests_too_deep(value: Any) -> bool:
    """Whether arrays and objects nest more than ``MAX_DEPTH`` deep, level by level."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_DEPTH):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _decode(raw: bytes) -> Any:
    """The JSON document, or ``InvalidJson`` saying what is wrong with it."""
    too_deep = f"request body nests objects or arrays more than {MAX_DEPTH} deep"
    try:
        body = json.loads(
            raw,
            object_pairs_hook=_object,
            parse_float=Decimal,
            parse_int=_integer,
            parse_constant=_constant,
        )
    except _Unreadable as error:
        raise InvalidJson(str(error)) from None
    except UnicodeDecodeError:
        raise InvalidJson("request body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise InvalidJson(f"request body is not valid JSON: {error.msg} at {where}") from None
    except RecursionError:
        raise InvalidJson(too_deep) from None
    if _nests_too_deep(body):
        raise InvalidJson(too_deep)
    return body


def read_json_object(*, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; a request without a body counts as ``{}`` when
    ``optional`` (a body of whitespace is not "without a body": it is not JSON).

    Fractions are read as ``Decimal``, never float, so money stays exact (``app.kit.money``).
    """
    raw = request.get_data(cache=True)
    if not raw and optional:
        return {}
    if not raw.strip():
        what = "empty" if not raw else "only whitespace"
        raise InvalidJson(f"request body is {what}: send a JSON object")
    body = _decode(raw)
    if not isinstance(body, dict):
        kind = json.dumps(body) if body is None or isinstance(body, bool) else _KINDS[type(body)]
        raise InvalidJson(f"request body must be a JSON object, not {kind}")
    return body


def validate(
    model: type[Model], data: dict[str, Any], context: dict[str, Any] | None = None
) -> Model:
    """``context`` reaches the model's validators (what only the running service knows)."""
    try:
        return model.model_validate(data, context=context)
    except PydanticValidationError as error:
        raise ValidationFailed(field_errors(error)) from None


def parse(
    model: type[Model], *, optional: bool = False, context: dict[str, Any] | None = None
) -> Model:
    return validate(model, read_json_object(optional=optional), context)


def _has_body() -> bool:
    if request.content_length is not None:
        return request.content_length > 0
    return bool(request.get_data(cache=True))  # chunked: read, up to the 64 KiB limit


def refuse_undeclared_input(*, takes_body: bool, takes_query: bool) -> None:
    """422 naming each query parameter of a route that takes none, and ``body`` for a body
    sent to a route that takes none (an empty one is none): ignoring it would apply a
    request the client did not make."""
    fields = {} if takes_query else dict.fromkeys(request.args, _NOT_A_FIELD)
    if not takes_body and _has_body():
        fields["body"] = "this request takes no body"
    if fields:
        raise ValidationFailed(fields)


def parse_query(model: type[Model]) -> Model:
    """The query string as ``model``; a parameter given twice is ambiguous, so refused."""
    given = request.args.to_dict(flat=False)
    repeated = {
        name: "is given more than once" for name, values in given.items() if len(values) > 1
    }
    if repeated:
        raise ValidationFailed(repeated)
    return validate(model, {name: values[0] for name, values in given.items()})
