"""Keyset pagination with opaque cursors: a page costs the same on row 10^6 as on row 1.

    query = select(Order).order_by(Order.id.desc())
    page = keyset_page(session, query, Order.id, after=cursor, limit=20)
    page.items, page.next_cursor            # next_cursor is None on the last page

Pages run newest first by id, so rows inserted while a client pages never shift a later
page: they are newer than every cursor already handed out.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BeforeValidator, WithJsonSchema
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

Row = TypeVar("Row")
_PREFIX = "v1:"


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> int:
    if not isinstance(cursor, str):
        raise ValueError("is not a cursor this API gave out")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("is not a cursor this API gave out") from None
    digits = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or not digits.isdecimal() or len(digits) > 12:
        raise ValueError("is not a cursor this API gave out")
    return int(digits)


Cursor = Annotated[
    int,
    BeforeValidator(decode_cursor),
    WithJsonSchema({"type": "string", "description": "next_cursor of the previous page"}),
]
"""A query field holding a cursor; validated to the id it stands for."""


@dataclass
class Page(Generic[Row]):
    items: list[Row]
    next_cursor: str | None


def keyset_page(
    session: Session,
    query: Select[Any],
    key: InstrumentedAttribute[int],
    *,
    after: int | None,
    limit: int,
) -> Page[Any]:
    """The rows of ``query`` (ordered by ``key`` descending) that come after the cursor."""
    if after is not None:
        query = query.where(key < after)
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(getattr(items[-1], key.key)) if more else None)
