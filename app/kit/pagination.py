"""Keyset pagination with opaque cursors: a page costs the same on row 10^6 as on row 1.

    query = select(Order).order_by(Order.id.desc())
    page = keyset_page(session, query, Order.id, after=cursor, limit=20)
    page.items, page.next_cursor            # next_cursor is None on the last page

Pages run newest first by id, so rows inserted while a client pages never shift a later
page: they are newer than every cursor already handed out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BeforeValidator, Field, WithJsonSchema
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.kit.database import MAX_ID
from app.kit.validation import RequestModel

Row = TypeVar("Row")
_CURSOR = re.compile(r"^c[0-9a-z]{1,7}$")
"""``c`` and the last id in base 36: every string of this shape is a place to resume, so
the documented pattern admits exactly the cursors the API accepts."""


def encode_cursor(last_id: int) -> str:
    digits = ""
    while True:
        last_id, digit = divmod(last_id, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if last_id == 0:
            return "c" + digits


def decode_cursor(cursor: Any) -> int:
    if not isinstance(cursor, str) or not _CURSOR.match(cursor):
        raise ValueError("is not a cursor this API gave out")
    return int(cursor[1:], 36)


Cursor = Annotated[
    int,
    BeforeValidator(decode_cursor),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _CURSOR.pattern,
            "description": "next_cursor of the previous page",
        }
    ),
]
"""A query field holding a cursor; validated to the id it stands for."""


class PageQuery(RequestModel):
    """The query of every list: a page of 1 to 100 rows (20 unless asked), after a cursor."""

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Cursor | None = None


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
    if after is not None and after <= MAX_ID:  # a cursor above every id: from the top
        query = query.where(key < after)
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(getattr(items[-1], key.key)) if more else None)
