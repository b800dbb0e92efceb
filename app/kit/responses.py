"""The JSON envelope every response with a body uses, and the models that fill it.

class UserOut(ResponseModel):           # its fields read from a row's attributes
    id: int
    username: str

return ok(UserOut.of(user))             # 200 {"code": 0, "msg": "ok", "data": {...}}
return created(OrderOut.of(order))      # 201
error_response(409, "username_taken", "username already taken")
"""

from __future__ import annotations

from typing import Any, Self

from flask import Response, current_app
from pydantic import BaseModel, ConfigDict


class ResponseModel(BaseModel):
    """A response body made from a row: ``Out.of(row)`` reads each field from the row's
    attribute of that name (or its ``validation_alias``, as ``app.kit.money.amount_of``
    sets)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, row: object) -> Self:
        return cls.model_validate(row)


def envelope(status: int, code: int, msg: str, data: Any) -> Response:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    body = current_app.json.dumps({"code": code, "msg": msg, "data": data})
    return current_app.response_class(body + "\n", status=status, mimetype="application/json")


def ok(data: Any = None, msg: str = "ok", status: int = 200) -> Response:
    return envelope(status, 0, msg, {} if data is None else data)


def created(data: Any, msg: str = "created") -> Response:
    return ok(data, msg, status=201)


def error_response(status: int, slug: str, msg: str, **extra: Any) -> Response:
    return envelope(status, status, msg, {"error": slug, **extra})
