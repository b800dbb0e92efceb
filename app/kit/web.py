"""What every microshop Flask app gets, with or without a database.

    init_web(app)

The JSON envelope on every error path, 64 KiB bodies, ``X-Request-ID``, paths that match
with or without a trailing slash instead of redirecting to an HTML page, and the ``id``
URL converter for row ids.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from app.kit.database import MAX_ID
from app.kit.errors import register_error_handlers
from app.kit.request_id import init_request_id

MAX_BODY_BYTES = 64 * 1024


class IdConverter(IntegerConverter):
    """``/<id:user_id>``: a row id, 1 to 2^31-1, the range of an INTEGER on every database.

    A larger number cannot name a row, so it is a 404 at routing rather than an overflow
    in the driver (a 500)."""

    regex = r"[1-9][0-9]*"  # ASCII and canonical: not "0001", nor any non-ASCII digit

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=MAX_ID)


def init_web(app: Flask) -> None:
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, PROPAGATE_EXCEPTIONS=False)
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.url_map.converters["id"] = IdConverter
    init_request_id(app)
    register_error_handlers(app)
