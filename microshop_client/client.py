"""``Client``: microshop's HTTP API from synchronous Python, over one pooled connection.

from microshop_client import Client

with Client("http://127.0.0.1:8080") as shop:        # or Client(app=application)
    shop.register("alice", "correct horse", "alice@example.com")
    shop.login("alice", "correct horse")               # keeps and renews the tokens
    order = shop.place_order("desk lamp", price="42.50")
    payment = shop.pay(order.id)                       # with an Idempotency-Key
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Self

import httpx

from microshop_client import _protocol as protocol
from microshop_client._protocol import Amount, Model, Tokens, given
from microshop_client.models.order import NewOrder, OrderOut, OrderPage
from microshop_client.models.payment import (
    NewPayment,
    PaymentOut,
    PaymentPage,
    RefundOut,
    RefundRequest,
)
from microshop_client.models.user import (
    AccessToken,
    Credentials,
    Logout,
    PasswordChange,
    Registration,
    TokenPair,
    UserOut,
)
from microshop_client.routes import ROUTES, Route


class Client:
    """One shop, one connection pool. ``url`` is the shop's base URL (with the prefix an
    embedding host mounted it under); ``app`` a WSGI application to call in-process,
    with no socket (``wsgi.application``, or a host that mounts the shop under ``prefix``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        app: Any = None,
        prefix: str = "",
        access_token: str | None = None,
        refresh_token: str | None = None,
        timeout: httpx.Timeout | float = protocol.DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
        limits: httpx.Limits = protocol.DEFAULT_LIMITS,
    ) -> None:
        if app is not None:
            transport = httpx.WSGITransport(app=app)
            url = url or protocol.IN_PROCESS_URL
        self.http = httpx.Client(
            base_url=protocol.base_url(url, prefix),
            timeout=timeout,
            transport=transport,
            headers=headers,
            limits=limits,
        )
        self.tokens = Tokens(access_token, refresh_token) if access_token else None
        self._username: str | None = None
        self._renewing = threading.Lock()

    # -- the user service

    def register(self, username: str, password: str, email: str) -> UserOut:
        """Create an account (``POST /user/register``)."""
        body = Registration(username=username, password=password, email=email)
        return self._call("register", UserOut, body=body)

    def login(self, username: str, password: str) -> TokenPair:
        """Log in (``POST /user/login``); the client keeps both tokens and renews the
        access token when it expires."""
        pair = self._call(
            "login", TokenPair, body=Credentials(username=username, password=password)
        )
        self.tokens = Tokens.issued(pair.access_token, pair.refresh_token, pair.expires_in)
        self._username = username
        return pair

    def refresh(self) -> AccessToken:
        """A new access token for the refresh token (``POST /user/refresh``). The client
        calls it by itself when the access token runs out."""
        stale = self.tokens
        with self._renewing:
            fresh = self._call("refresh", AccessToken)
            refresh_token = stale.refresh_token if stale else None
            self.tokens = Tokens.issued(fresh.access_token, refresh_token, fresh.expires_in)
        return fresh

    def logout(self) -> None:
        """Revoke the access token and the refresh token (``POST /user/logout``)."""
        refresh_token = self.tokens.refresh_token if self.tokens else None
        self._call("logout", None, body=Logout(**given(refresh_token=refresh_token)))
        self.tokens = None

    def me(self) -> UserOut:
        """The caller's account (``GET /user/me``)."""
        return self._call("me", UserOut)

    def user(self, user_id: int) -> UserOut:
        """An account: the caller's own, or anyone's for an admin (``GET /user/<id>``)."""
        return self._call("user", UserOut, user_id=user_id)

    def change_password(self, old_password: str, new_password: str) -> None:
        """Change the password (``POST /user/password``). Every token issued before stops
        working; a client that logged in logs in again with the new password."""
        body = PasswordChange(old_password=old_password, new_password=new_password)
        self._call("change_password", None, body=body)
        self.tokens = None
        if self._username is not None:
            self.login(self._username, new_password)

    # -- the order service

    def place_order(
        self,
        product: str,
        price: Amount,
        quantity: int | None = None,
        currency: str | None = None,
        userid: int | None = None,
    ) -> OrderOut:
        """Place an order, ``pending`` (``POST /order/``)."""
        body = NewOrder(
            **given(
                product=product, price=price, quantity=quantity, currency=currency, userid=userid
            )
        )
        return self._call("place_order", OrderOut, body=body)

    def order(self, order_id: int) -> OrderOut:
        """One order (``GET /order/<id>``)."""
        return self._call("order", OrderOut, order_id=order_id)

    def cancel_order(self, order_id: int) -> OrderOut:
        """Cancel an order; a paid one is refunded in full (``DELETE /order/<id>``)."""
        return self._call("cancel_order", OrderOut, order_id=order_id)

    def orders(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> OrderPage:
        """One page of the caller's orders, newest first (``GET /order/``)."""
        query = {"status": status, "limit": limit, "cursor": cursor}
        return self._call("orders", OrderPage, query=query)

    # -- the payment service

    def pay(
        self,
        order_id: int,
        payment_method: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentOut:
        """Pay an order (``POST /payment/``). The request carries an ``Idempotency-Key``
        (a fresh one unless given), so the client's own retries charge at most once."""
        body = NewPayment(**given(order_id=order_id, payment_method=payment_method))
        return self._call("pay", PaymentOut, body=body, idempotency_key=idempotency_key)

    def payment(self, payment_id: int) -> PaymentOut:
        """One payment (``GET /payment/<id>``)."""
        return self._call("payment", PaymentOut, payment_id=payment_id)

    def payments(
        self, order_id: int | None = None, limit: int | None = None, cursor: str | None = None
    ) -> PaymentPage:
        """One page of the caller's payments, newest first (``GET /payment/``)."""
        query = {"order_id": order_id, "limit": limit, "cursor": cursor}
        return self._call("payments", PaymentPage, query=query)

    def refund(
        self,
        payment_id: int,
        amount: Amount | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> RefundOut:
        """Refund a payment, by default all that is left (``POST /payment/<id>/refund``),
        with an ``Idempotency-Key`` as ``pay`` has."""
        body = RefundRequest(**given(amount=amount))
        return self._call(
            "refund", RefundOut, body=body, idempotency_key=idempotency_key, payment_id=payment_id
        )

    # -- the platform

    def index(self) -> dict[str, Any]:
        """The mounted services and the version (``GET /``)."""
        return self._call("index", None)

    def health(self, service: str | None = None) -> dict[str, Any]:
        """``GET /healthz``, or ``/<service>/healthz``: answers while the process lives."""
        return self._call("health", None, service=service)

    def readiness(self, service: str | None = None) -> dict[str, Any]:
        """``GET /readyz`` (or one service's): raises ``ServiceUnavailable`` when a database
        cannot be reached."""
        return self._call("readiness", None, service=service)

    def metrics(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        return self._call("metrics", None)

    def openapi(self, service: str) -> dict[str, Any]:
        """A service's OpenAPI 3.1 document (``GET /<service>/openapi.json``)."""
        return self._call("openapi", None, service=service)

    # -- the connection

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self,
        name: str,
        model: type[Model] | None,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        **arguments: Any,
    ) -> Any:
        route = ROUTES[name]
        request = protocol.build(
            self.http,
            route,
            protocol.path_of(route, **arguments),
            body=body,
            query=query,
            idempotency_key=idempotency_key,
        )
        renewed = False
        attempt = 0
        while True:
            self._renew_if_expiring(route)
            protocol.authorize(request, route, self.tokens)
            try:
                response = self.http.send(request)
            except httpx.TransportError as error:
                delay = protocol.retry_delay(route, attempt, error=error)
                if delay is None:
                    raise protocol.unreachable(request, error) from error
                attempt += 1
                time.sleep(delay)
                continue
            if not renewed and protocol.expired(response, route) and self._can_renew():
                renewed = True
                self._renew(request)
                continue
            delay = protocol.retry_delay(route, attempt, response=response)
            if delay is None:
                return protocol.read(response, route, model)
            attempt += 1
            time.sleep(delay)

    def _can_renew(self) -> bool:
        return self.tokens is not None and self.tokens.refresh_token is not None

    def _renew_if_expiring(self, route: Route) -> None:
        if route.auth == "access" and self.tokens is not None and self.tokens.expiring():
            self._renew(None)

    def _renew(self, failed: httpx.Request | None) -> None:
        """Refresh once, however many threads found the token stale at the same time."""
        with self._renewing:
            tokens = self.tokens
            used = failed.headers.get("Authorization") if failed is not None else None
            if tokens is None or (used is not None and used != f"Bearer {tokens.access_token}"):
                return  # another thread renewed it meanwhile
            if failed is None and not tokens.expiring():
                return
            fresh = self._call("refresh", AccessToken)
            self.tokens = Tokens.issued(fresh.access_token, tokens.refresh_token, fresh.expires_in)
