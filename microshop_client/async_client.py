"""``AsyncClient``: microshop's HTTP API from asyncio, many calls over one connection pool.

    import asyncio
    from microshop_client import AsyncClient

    async def main() -> None:
        async with AsyncClient("http://127.0.0.1:8080") as shop:
            await shop.login("alice", "correct horse")      # keeps and renews the tokens
            orders = await asyncio.gather(*(shop.place_order("pen", "1.50") for _ in range(10)))
            await asyncio.gather(*(shop.pay(order.id) for order in orders))

    asyncio.run(main())

It has ``Client``'s methods, each a coroutine; a refresh is made once however many tasks
find the access token stale together.
"""

from __future__ import annotations

import asyncio
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
from microshop_client.transports import WsgiInThreads


class AsyncClient:
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
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        limits: httpx.Limits = protocol.DEFAULT_LIMITS,
    ) -> None:
        if app is not None:
            transport = WsgiInThreads(app)
            url = url or protocol.IN_PROCESS_URL
        self.http = httpx.AsyncClient(
            base_url=protocol.base_url(url, prefix),
            timeout=timeout,
            transport=transport,
            headers=headers,
            limits=limits,
        )
        self.tokens = Tokens(access_token, refresh_token) if access_token else None
        self._username: str | None = None
        self._renewing = asyncio.Lock()

    # -- the user service

    async def register(self, username: str, password: str, email: str) -> UserOut:
        """Create an account (``POST /user/register``)."""
        body = Registration(username=username, password=password, email=email)
        return await self._call("register", UserOut, body=body)

    async def login(self, username: str, password: str) -> TokenPair:
        """Log in (``POST /user/login``); the client keeps both tokens and renews the
        access token when it expires."""
        pair = await self._call(
            "login", TokenPair, body=Credentials(username=username, password=password)
        )
        self.tokens = Tokens.issued(pair.access_token, pair.refresh_token, pair.expires_in)
        self._username = username
        return pair

    async def refresh(self) -> AccessToken:
        """A new access token for the refresh token (``POST /user/refresh``). The client
        calls it by itself when the access token runs out."""
        stale = self.tokens
        async with self._renewing:
            fresh = await self._call("refresh", AccessToken)
            refresh_token = stale.refresh_token if stale else None
            self.tokens = Tokens.issued(fresh.access_token, refresh_token, fresh.expires_in)
        return fresh

    async def logout(self) -> None:
        """Revoke the access token and the refresh token (``POST /user/logout``)."""
        refresh_token = self.tokens.refresh_token if self.tokens else None
        await self._call("logout", None, body=Logout(**given(refresh_token=refresh_token)))
        self.tokens = None

    async def me(self) -> UserOut:
        """The caller's account (``GET /user/me``)."""
        return await self._call("me", UserOut)

    async def user(self, user_id: int) -> UserOut:
        """An account: the caller's own, or anyone's for an admin (``GET /user/<id>``)."""
        return await self._call("user", UserOut, user_id=user_id)

    async def change_password(self, old_password: str, new_password: str) -> None:
        """Change the password (``POST /user/password``). Every token issued before stops
        working; a client that logged in logs in again with the new password."""
        body = PasswordChange(old_password=old_password, new_password=new_password)
        await self._call("change_password", None, body=body)
        self.tokens = None
        if self._username is not None:
            await self.login(self._username, new_password)

    # -- the order service

    async def place_order(
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
        return await self._call("place_order", OrderOut, body=body)

    async def order(self, order_id: int) -> OrderOut:
        """One order (``GET /order/<id>``)."""
        return await self._call("order", OrderOut, order_id=order_id)

    async def cancel_order(self, order_id: int) -> OrderOut:
        """Cancel an order; a paid one is refunded in full (``DELETE /order/<id>``)."""
        return await self._call("cancel_order", OrderOut, order_id=order_id)

    async def orders(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> OrderPage:
        """One page of the caller's orders, newest first (``GET /order/``)."""
        query = {"status": status, "limit": limit, "cursor": cursor}
        return await self._call("orders", OrderPage, query=query)

    # -- the payment service

    async def pay(
        self,
        order_id: int,
        payment_method: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentOut:
        """Pay an order (``POST /payment/``). The request carries an ``Idempotency-Key``
        (a fresh one unless given), so the client's own retries charge at most once."""
        body = NewPayment(**given(order_id=order_id, payment_method=payment_method))
        return await self._call("pay", PaymentOut, body=body, idempotency_key=idempotency_key)

    async def payment(self, payment_id: int) -> PaymentOut:
        """One payment (``GET /payment/<id>``)."""
        return await self._call("payment", PaymentOut, payment_id=payment_id)

    async def payments(
        self, order_id: int | None = None, limit: int | None = None, cursor: str | None = None
    ) -> PaymentPage:
        """One page of the caller's payments, newest first (``GET /payment/``)."""
        query = {"order_id": order_id, "limit": limit, "cursor": cursor}
        return await self._call("payments", PaymentPage, query=query)

    async def refund(
        self,
        payment_id: int,
        amount: Amount | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> RefundOut:
        """Refund a payment, by default all that is left (``POST /payment/<id>/refund``),
        with an ``Idempotency-Key`` as ``pay`` has."""
        body = RefundRequest(**given(amount=amount))
        return await self._call(
            "refund", RefundOut, body=body, idempotency_key=idempotency_key, payment_id=payment_id
        )

    # -- the platform

    async def index(self) -> dict[str, Any]:
        """The mounted services and the version (``GET /``)."""
        return await self._call("index", None)

    async def health(self, service: str | None = None) -> dict[str, Any]:
        """``GET /healthz``, or ``/<service>/healthz``: answers while the process lives."""
        return await self._call("health", None, service=service)

    async def readiness(self, service: str | None = None) -> dict[str, Any]:
        """``GET /readyz`` (or one service's): raises ``ServiceUnavailable`` when a database
        cannot be reached."""
        return await self._call("readiness", None, service=service)

    async def metrics(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        return await self._call("metrics", None)

    async def openapi(self, service: str) -> dict[str, Any]:
        """A service's OpenAPI 3.1 document (``GET /<service>/openapi.json``)."""
        return await self._call("openapi", None, service=service)

    # -- the connection

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(
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
            await self._renew_if_expiring(route)
            protocol.authorize(request, route, self.tokens)
            try:
                response = await self.http.send(request)
            except httpx.TransportError as error:
                delay = protocol.retry_delay(route, attempt, error=error)
                if delay is None:
                    raise protocol.unreachable(request, error) from error
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if not renewed and protocol.expired(response, route) and self._can_renew():
                renewed = True
                await self._renew(request)
                continue
            delay = protocol.retry_delay(route, attempt, response=response)
            if delay is None:
                return protocol.read(response, route, model)
            attempt += 1
            await asyncio.sleep(delay)

    def _can_renew(self) -> bool:
        return self.tokens is not None and self.tokens.refresh_token is not None

    async def _renew_if_expiring(self, route: Route) -> None:
        if route.auth == "access" and self.tokens is not None and self.tokens.expiring():
            await self._renew(None)

    async def _renew(self, failed: httpx.Request | None) -> None:
        """Refresh once, however many tasks found the token stale at the same time."""
        async with self._renewing:
            tokens = self.tokens
            used = failed.headers.get("Authorization") if failed is not None else None
            if tokens is None or (used is not None and used != f"Bearer {tokens.access_token}"):
                return  # another task renewed it meanwhile
            if failed is None and not tokens.expiring():
                return
            fresh = await self._call("refresh", AccessToken)
            self.tokens = Tokens.issued(fresh.access_token, tokens.refresh_token, fresh.expires_in)
