"""``AsyncClient`` against a real waitress server, and in-process: the scenarios, and
100 orders placed and paid with ``asyncio.gather`` over one connection pool."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from client.scenarios import signed_up, walk_async
from support import Server

from app.runtime.composition import Application
from microshop_client import AsyncClient, Unauthorized
from microshop_client.example import place_and_pay

pytestmark = pytest.mark.e2e


def test_the_scenarios_run_against_waitress(live_server: Server):
    async def scenario() -> None:
        async with AsyncClient(live_server.url) as shop, AsyncClient(live_server.url) as other:
            await walk_async(shop, other)

    asyncio.run(scenario())


def test_the_scenarios_run_in_process(application: Application):
    async def scenario() -> None:
        async with AsyncClient(app=application) as shop, AsyncClient(app=application) as other:
            await walk_async(shop, other)

    asyncio.run(scenario())


def test_a_hundred_orders_are_placed_and_paid_each_once(live_server: Server):
    connections: set[tuple[str, int]] = set()

    async def opened(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        connections.add(stream.get_extra_info("client_addr"))

    async def run() -> list:
        pool = httpx.Limits(max_connections=10)
        async with AsyncClient(live_server.url, limits=pool) as shop:
            shop.http.event_hooks["response"].append(opened)
            await signed_up(shop)
            started = time.monotonic()
            paid = await place_and_pay(shop)
            print(f"100 orders placed and paid in {time.monotonic() - started:.2f} s")
            orders = [await shop.order(order.id) for order, _ in paid]
            payments = []
            for order, _ in paid:
                payments += (await shop.payments(order_id=order.id)).items
            return [orders, payments, paid]

    orders, payments, paid = asyncio.run(run())
    assert len({order.id for order, _ in paid}) == 100
    assert {order.status for order in orders} == {"paid"}
    assert sorted(p.order_id for p in payments) == sorted(order.id for order in orders)
    assert {p.status for p in payments} == {"succeeded"}
    assert None not in connections
    assert 1 <= len(connections) <= 10  # one pool: 10 sockets carried some 400 requests


def test_concurrent_tasks_renew_an_expired_token_once(application: Application):
    async def run() -> list[str]:
        async with AsyncClient(app=application) as shop:
            await signed_up(shop)
            refreshes: list[str] = []

            async def count(request: httpx.Request) -> None:
                if request.url.path == "/user/refresh":
                    refreshes.append(request.url.path)

            shop.http.event_hooks["request"].append(count)
            assert shop.tokens is not None
            shop.tokens = type(shop.tokens)(
                shop.tokens.access_token, shop.tokens.refresh_token, expires_at=0
            )
            await asyncio.gather(*(shop.me() for _ in range(10)))
            await shop.logout()
            with pytest.raises(Unauthorized):
                await shop.me()
            return refreshes

    assert len(asyncio.run(run())) == 1
