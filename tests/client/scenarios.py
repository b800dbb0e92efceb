"""The end-to-end scenarios of the suite, told through the client: the same story
whether the shop is in-process, behind waitress or behind uvicorn."""

from __future__ import annotations

import pytest
from support import PASSWORD, unique

from microshop_client import (
    AsyncClient,
    CardDeclined,
    Client,
    Conflict,
    Forbidden,
    Unauthorized,
    ValidationFailed,
)


def sign_up(shop: Client) -> str:
    name = unique("client")
    shop.register(name, PASSWORD, f"{name}@example.com")
    shop.login(name, PASSWORD)
    return name


async def signed_up(shop: AsyncClient) -> str:
    name = unique("client")
    await shop.register(name, PASSWORD, f"{name}@example.com")
    await shop.login(name, PASSWORD)
    return name


def walk(shop: Client, other: Client) -> None:
    """Register, log in, order, pay, refund, cancel, and the refusals on the way."""
    name = sign_up(shop)
    assert shop.me().username == name
    assert shop.user(shop.me().id).username == name

    order = shop.place_order("desk lamp", price="42.50", quantity=2)
    assert (order.status, order.amount, order.currency) == ("pending", 85.0, "USD")
    payment = shop.pay(order.id)
    assert (payment.status, payment.amount, payment.order_id) == ("succeeded", 85.0, order.id)
    assert shop.order(order.id).status == "paid"
    with pytest.raises(Conflict) as again:
        shop.pay(order.id)
    assert again.value.slug == "order_already_paid"
    assert again.value.request_id

    refund = shop.refund(payment.id, amount="5.00")
    assert (refund.amount, refund.payment_id) == (5.0, payment.id)
    assert shop.payment(payment.id).status == "partially_refunded"
    cancelled = shop.cancel_order(order.id)
    assert cancelled.status == "cancelled"
    assert shop.order(order.id).status == "refunded"
    assert shop.payment(payment.id).refunded_amount == 85.0

    declined = shop.place_order("pen", price=1.5)
    with pytest.raises(CardDeclined) as card:
        shop.pay(declined.id, "tok_chargeDeclined")
    assert (card.value.status, card.value.slug) == (402, "card_declined")
    assert shop.order(declined.id).status == "pending"

    with pytest.raises(ValidationFailed) as invalid:  # the schema's pattern, not the sandbox's
        shop.pay(declined.id, "tok_unknown")
    assert set(invalid.value.fields) == {"payment_method"}

    sign_up(other)
    with pytest.raises(Forbidden):
        other.order(order.id)

    page = shop.orders(limit=1)
    assert [item.id for item in page.items] == [declined.id]
    assert shop.orders(cursor=page.next_cursor).items[0].id == order.id
    assert {p.order_id for p in shop.payments(order_id=order.id).items} == {order.id}

    tokens = shop.tokens
    shop.logout()
    assert shop.tokens is None
    shop.tokens = tokens  # the tokens logout revoked, tried again
    with pytest.raises(Unauthorized) as revoked:
        shop.me()
    assert revoked.value.slug == "token_revoked"
    with pytest.raises(Unauthorized):
        shop.refresh()


async def walk_async(shop: AsyncClient, other: AsyncClient) -> None:
    """``walk``, through ``AsyncClient``."""
    name = await signed_up(shop)
    me = await shop.me()
    assert me.username == name
    order = await shop.place_order("desk lamp", price="42.50", quantity=2)
    payment = await shop.pay(order.id)
    assert (payment.status, payment.amount) == ("succeeded", 85.0)
    assert (await shop.order(order.id)).status == "paid"
    with pytest.raises(Conflict) as again:
        await shop.pay(order.id)
    assert again.value.slug == "order_already_paid"
    await shop.refund(payment.id, amount=5)
    assert (await shop.cancel_order(order.id)).status == "cancelled"
    assert (await shop.order(order.id)).status == "refunded"
    await signed_up(other)
    with pytest.raises(Forbidden):
        await other.order(order.id)
    tokens = shop.tokens
    await shop.logout()
    shop.tokens = tokens  # the tokens logout revoked, tried again
    with pytest.raises(Unauthorized) as revoked:
        await shop.me()
    assert revoked.value.slug == "token_revoked"
