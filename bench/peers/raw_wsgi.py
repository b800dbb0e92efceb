"""The fastest WSGI answer there is: ``waitress-serve bench.peers.raw_wsgi:application``.

It answers every path with the body of microshop's ``/healthz``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"code": 0, "data": {"status": "alive"}, "msg": "ok"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
