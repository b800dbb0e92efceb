"""Place and pay 100 orders at once: ``asyncio.gather`` over one connection pool.

    python -m microshop_client.example --url http://127.0.0.1:8080 --username alice --password '…'

Each pay carries its own ``Idempotency-Key``, so the client's retries (a dropped
connection, a 503) never charge an order twice.
"""

from __future__ import annotations

import argparse
import asyncio

import httpx

from microshop_client import AsyncClient
from microshop_client.models import OrderOut, PaymentOut


async def place_and_pay(shop: AsyncClient, count: int = 100) -> list[tuple[OrderOut, PaymentOut]]:
    """``count`` orders placed, then paid, all in flight together."""
    orders = await asyncio.gather(
        *(shop.place_order(f"notebook #{n}", price="3.50") for n in range(count))
    )
    payments = await asyncio.gather(*(shop.pay(order.id) for order in orders))
    return list(zip(orders, payments, strict=True))


async def main(url: str, username: str, password: str, count: int) -> None:
    pool = httpx.Limits(max_connections=20)  # 20 sockets carry all the requests
    async with AsyncClient(url, limits=pool) as shop:
        await shop.login(username, password)
        paid = await place_and_pay(shop, count)
    print(f"{len(paid)} orders paid, {sum(payment.amount for _, payment in paid):.2f} in all")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--count", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.url, arguments.username, arguments.password, arguments.count))
