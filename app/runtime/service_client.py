"""Calls between services, the same whether the other one is in this process or not.

    peers = ServiceClient(settings)         # made before the services, handed to them
    peers.mount("order", order_app)         # as the composition builds each one
    reply = peers.call("order", "GET", f"/internal/orders/{order_id}", caller="payment")
    reply.status, reply.data                # 200, {"id": 7, "userid": 3, ...}

A mounted service is called through its WSGI callable: no socket, no thread hop. One
named by ``MICROSHOP_<NAME>_URL`` is called over HTTP with timeouts, pooled connections
and a bounded retry for safe requests. Every call carries a one-minute service token and
the caller's ``X-Request-ID``. A service that cannot be reached is a 503
``service_unavailable``, never a hang or a 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from flask import g, has_app_context
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.kit.auth import issue_service_token
from app.kit.errors import ServiceUnavailable
from app.kit.peers import Reply
from app.kit.request_id import HEADER as REQUEST_ID_HEADER
from app.settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

TIMEOUT = httpx.Timeout(5.0, connect=2.0)
SAFE_METHODS = frozenset({"GET", "HEAD"})
RETRY_DELAYS = (0.1, 0.4)  # two more tries for a safe request, then give up
RETRY_STATUSES = frozenset({502, 503, 504})


class ServiceClient:
    """The other services, as this process reaches them (``app.kit.peers.Peers``): the
    ones mounted here through their WSGI callables, the others at their URLs."""

    def __init__(self, settings: Settings, mounted: Mapping[str, WSGIApplication] | None = None):
        self.settings = settings
        self.mounted = dict(mounted or {})
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    def mount(self, name: str, app: WSGIApplication) -> None:
        """``name`` is served in this process by ``app``: call it there, not by URL."""
        self.mounted[name] = app

    @property
    def urls(self) -> dict[str, str]:
        """The services reached over HTTP: every configured URL not mounted here."""
        return {
            name: url
            for name, url in self.settings.service_urls.items()
            if name not in self.mounted
        }

    def call(
        self, service: str, method: str, path: str, *, caller: str, json_body: Any = None
    ) -> Reply:
        headers = {
            "Authorization": f"Bearer {issue_service_token(self.settings.jwt_secret, caller)}",
            REQUEST_ID_HEADER: g.get("request_id", "") if has_app_context() else "",
        }
        headers = {name: value for name, value in headers.items() if value}
        if service in self.mounted:
            return self._call_mounted(service, method, path, headers, json_body)
        if service in self.urls:
            return self._call_over_http(service, method, path, headers, json_body)
        raise ServiceUnavailable(f"{service} service is not configured")

    def _call_mounted(
        self, service: str, method: str, path: str, headers: dict[str, str], json_body: Any
    ) -> Reply:
        builder = EnvironBuilder(
            path=path,
            base_url=f"http://{service}.internal/{service}",
            method=method,
            headers=headers,
            json=json_body,
        )
        try:
            body_iter, status, _headers = run_wsgi_app(
                self.mounted[service], builder.get_environ(), buffered=True
            )
            body = b"".join(body_iter)
        finally:
            builder.close()
        return _reply(service, int(status.split(" ", 1)[0]), body)

    def _client(self, service: str) -> httpx.Client:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = httpx.Client(base_url=self.urls[service], timeout=TIMEOUT)
            return self._clients[service]

    def _call_over_http(
        self, service: str, method: str, path: str, headers: dict[str, str], json_body: Any
    ) -> Reply:
        attempts = 1 + (len(RETRY_DELAYS) if method in SAFE_METHODS else 0)
        for attempt in range(attempts):
            try:
                response = self._client(service).request(
                    method, f"/{service}{path}", headers=headers, json=json_body
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code not in RETRY_STATUSES:
                return _reply(service, response.status_code, response.content)
            if attempt + 1 < attempts:
                time.sleep(RETRY_DELAYS[attempt])
        raise ServiceUnavailable(f"{service} service unavailable")

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _reply(service: str, status: int, body: bytes) -> Reply:
    try:
        envelope = json.loads(body)
        data = envelope["data"]
    except (ValueError, KeyError, TypeError):
        raise ServiceUnavailable(f"{service} service answered something not JSON") from None
    return Reply(status, data if isinstance(data, dict) else {})
