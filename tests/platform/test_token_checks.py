"""A request's bearer token is verified once (issue #11): one signature check, however many
parts of the request (a rate limit's key, the view, the access log) need its claims."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from support import PASSWORD, bearer, unique
from werkzeug.test import Client


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT decodes, signed or not, while the test runs."""
    seen: list[str] = []
    api = jwt.api_jwt._jwt_global_obj
    decode_complete = api.decode_complete

    def counted(token: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return decode_complete(token, *args, **kwargs)

    monkeypatch.setattr(api, "decode_complete", counted)
    return seen


def signed_up(client: Client) -> dict[str, Any]:
    name = unique("once")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert client.post("/user/register", json=body).status_code == 201
    login = client.post("/user/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200
    return login.get_json()["data"]


def test_an_order_read_decodes_its_token_once(client: Client, decodes: list[str]):
    account = signed_up(client)
    headers = bearer(account["access_token"])
    order = client.post("/order/", json={"product": "pen", "price": 5}, headers=headers)
    decodes.clear()
    reply = client.get(f"/order/{order.get_json()['data']['id']}", headers=headers)
    assert reply.status_code == 200
    assert decodes == [account["access_token"]]


def test_a_rate_limited_route_shares_the_views_check(client: Client, decodes: list[str]):
    """``POST /user/password`` keys its limit on the token's user, then the view needs it."""
    account = signed_up(client)
    decodes.clear()
    reply = client.post(
        "/user/password",
        json={"old_password": "not-the-password", "new_password": "another-horse-battery"},
        headers=bearer(account["access_token"]),
    )
    assert reply.status_code == 401, reply.get_json()
    assert reply.get_json()["data"]["error"] == "invalid_credentials"
    assert decodes == [account["access_token"]]


def test_a_refresh_decodes_its_token_once(client: Client, decodes: list[str]):
    account = signed_up(client)
    decodes.clear()
    reply = client.post("/user/refresh", headers=bearer(account["refresh_token"]))
    assert reply.status_code == 200
    assert decodes == [account["refresh_token"]]
