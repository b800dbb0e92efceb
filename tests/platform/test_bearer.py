"""``Authorization: Bearer <token>``: the scheme in any case, with any spaces (RFC 7235),
in every service, for access, refresh and service tokens alike."""

from __future__ import annotations

import pytest
from support import SECRET, Shop, assert_error

from app.kit.auth import issue_service_token

SCHEMES = ["bearer", "BEARER", "bEaReR"]
SPELLINGS = [
    *(f"{scheme} {{token}}" for scheme in SCHEMES),
    "Bearer    {token}",  # 1*SP between the scheme and the token
    "bearer   {token}",
]
NOT_BEARER = ["Bearerx {token}", "Bear {token}", "Basic {token}", "{token}"]
SERVICE_ROUTES = {"user": "/me", "order": "/", "payment": "/"}
"""A route of each service that needs an access token and reads nothing else."""


def _client(shop: Shop, service: str):
    return {"user": shop.users, "order": shop.orders, "payment": shop.payments}[service]


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("service", sorted(SERVICE_ROUTES))
def test_an_access_token_is_taken_under_the_scheme_in_any_case(
    shop: Shop, service: str, spelling: str
):
    account = shop.users.signed_up()
    headers = {"Authorization": spelling.format(token=account.access)}
    reply = _client(shop, service).get(SERVICE_ROUTES[service], headers=headers)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("spelling", NOT_BEARER)
@pytest.mark.parametrize("service", sorted(SERVICE_ROUTES))
def test_another_scheme_or_none_is_still_a_missing_token(shop: Shop, service: str, spelling: str):
    account = shop.users.signed_up()
    headers = {"Authorization": spelling.format(token=account.access)}
    reply = _client(shop, service).get(SERVICE_ROUTES[service], headers=headers)
    assert_error(reply, 401, "missing_token")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_refresh_token_is_taken_under_the_scheme_in_any_case(shop: Shop, spelling: str):
    account = shop.users.signed_up()
    headers = {"Authorization": spelling.format(token=account.refresh)}
    reply = shop.users.post("/refresh", headers=headers)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_service_token_is_taken_under_the_scheme_in_any_case(shop: Shop, spelling: str):
    account = shop.users.signed_up()
    order = shop.order(account)
    token = issue_service_token(SECRET, caller="payment")
    headers = {"Authorization": spelling.format(token=token)}
    reply = shop.orders.get(f"/internal/orders/{order['id']}", headers=headers)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("spelling", NOT_BEARER)
def test_a_service_token_under_another_scheme_is_a_missing_token(shop: Shop, spelling: str):
    token = issue_service_token(SECRET, caller="payment")
    headers = {"Authorization": spelling.format(token=token)}
    reply = shop.orders.get("/internal/orders/1", headers=headers)
    assert_error(reply, 401, "missing_token")
