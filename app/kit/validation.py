"""Request bodies parsed into pydantic models, with the envelope's 400 and 422 on bad input.

    class NewUser(RequestModel):
        username: text(min_length=3, max_length=32, pattern=r"^[a-z]+$")

    form = parse(NewUser)                   # 400 invalid_json / 422 naming each bad field
    query = parse_query(OrderQuery)         # the query string, by the same rules

Request models forbid unknown fields, so nothing a client sends is silently ignored.
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
    conint,
)
from pydantic import ValidationError as PydanticValidationError

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


def text(*, min_length: int = 0, max_length: int, pattern: str | None = None) -> Any:
    """A bounded string field that any database can store and argon2 can hash."""
    constraints = StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)
    return Annotated[str, constraints, AfterValidator(_without_nul), _NO_NUL]


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


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
}


def field_errors(error: PydanticValidationError) -> dict[str, str]:
    """One message per offending field, keyed by its dotted path."""
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]) or "body"
        message = _MESSAGES.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        fields.setdefault(name, message)
    return fields


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json_object(*, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an empty body counts as ``{}`` when ``optional``.

    Fractions are read as ``Decimal``, never float, so money stays exact (``app.kit.money``).
    """
    raw = request.get_data(cache=True)
    if not raw.strip() and optional:
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidJson() from None
    if not isinstance(body, dict):
        raise InvalidJson()
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


def parse_query(model: type[Model]) -> Model:
    """The query string as ``model``; a parameter given twice is ambiguous, so refused."""
    given = request.args.to_dict(flat=False)
    repeated = {
        name: "is given more than once" for name, values in given.items() if len(values) > 1
    }
    if repeated:
        raise ValidationFailed(repeated)
    return validate(model, {name: values[0] for name, values in given.items()})
