"""``X-Request-ID`` in and out: the caller's value when it is sane, else a fresh one.

init_request_id(app)
g.request_id                            # for logs and calls to other services
"""

from __future__ import annotations

import random
import re

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"^[\x20-\x7e]{1,128}$")


def fresh_id() -> str:
    """32 random hex digits, as a UUID4's hex would be.

    An id names a request in the logs; it is not a secret, so it comes from ``random``
    (which a forked worker reseeds) rather than from the kernel: under waitress, the
    ``getrandom`` call of ``os.urandom`` per request cost 9% of ``/healthz``'s CPU
    (docs/performance.md)."""
    return f"{random.getrandbits(128):032x}"


def _incoming() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _ACCEPTABLE.match(given) else fresh_id()


def _outgoing(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id") or fresh_id()
    return response


def init_request_id(app: Flask) -> None:
    app.before_request(_incoming)
    app.after_request(_outgoing)
