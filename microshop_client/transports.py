"""``WsgiInThreads``: an in-process WSGI application behind ``AsyncClient``, no socket.

httpx's own ``WSGITransport`` is synchronous; this one runs each call in a worker thread
(``asyncio.to_thread``), so concurrent tasks reach the application concurrently, as a
threaded server's requests do, and the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class WsgiInThreads(httpx.AsyncBaseTransport):
    def __init__(self, app: Any) -> None:
        self.wsgi = httpx.WSGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        copy = httpx.Request(request.method, request.url, headers=request.headers, content=content)
        status, headers, body = await asyncio.to_thread(self._call, copy)
        return httpx.Response(status, headers=headers, content=body, request=request)

    def _call(self, request: httpx.Request) -> tuple[int, httpx.Headers, bytes]:
        response = self.wsgi.handle_request(request)
        return response.status_code, response.headers, response.read()
