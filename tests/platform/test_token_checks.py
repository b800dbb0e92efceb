"""A request's bearer token is verified once (issue #11): one signature check, however many
parts of the request (a rate limit's key, the view, the access log) need its claims; and a
process checks a token's signature once, for all the requests that send it, while its
expiry and the deny list are checked on every request."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from flask import Flask
from support import PASSWORD, bearer, unique
from werkzeug.test import Client

from app.kit import auth


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


def payload_of(token: str) -> dict[str, Any]:
    """A token's claims, read without PyJWT (whose decodes the tests count)."""
    return json.loads(jwt.utils.base64url_decode(token.split(".")[1]))


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
    decodes.clear()
    order = client.post("/order/", json={"product": "pen", "price": 5}, headers=headers)
    assert decodes == [account["access_token"]]
    reply = client.get(f"/order/{order.get_json()['data']['id']}", headers=headers)
    assert reply.status_code == 200
    assert decodes == [account["access_token"]]  # the token's next request decodes nothing


def test_a_remembered_token_still_expires(
    client: Client, decodes: list[str], monkeypatch: pytest.MonkeyPatch
):
    account = signed_up(client)
    headers = bearer(account["access_token"])
    assert client.get("/order/", headers=headers).status_code == 200
    expiry = payload_of(account["access_token"])["exp"]
    monkeypatch.setattr(auth.time, "time", lambda: expiry)  # the second it expires
    reply = client.get("/order/", headers=headers)
    assert reply.status_code == 401
    assert reply.get_json()["data"]["error"] == "token_expired"
    assert decodes == [account["access_token"]]


def test_a_remembered_token_is_still_refused_once_revoked(client: Client):
    account = signed_up(client)
    headers = bearer(account["access_token"])
    assert client.get("/user/me", headers=headers).status_code == 200
    assert client.post("/user/logout", headers=headers).status_code == 200
    reply = client.get("/user/me", headers=headers)  # its own revocations count at commit
    assert reply.status_code == 401
    assert reply.get_json()["data"]["error"] == "token_revoked"


def test_a_token_remembered_under_one_secret_is_refused_under_another(client: Client):
    account = signed_up(client)
    token = account["access_token"]
    assert client.get("/order/", headers=bearer(token)).status_code == 200
    other = Flask("other")
    other.config["JWT_SECRET_KEY"] = "another-secret-" + "x" * 48
    with other.app_context(), pytest.raises(jwt.InvalidSignatureError):
        auth.decode_token(token)


def test_an_altered_remembered_token_is_refused(client: Client):
    account = signed_up(client)
    token = account["access_token"]
    assert client.get("/order/", headers=bearer(token)).status_code == 200
    header, _, signature = token.split(".")
    claims = payload_of(token)
    forged = jwt.utils.base64url_encode(json.dumps({**claims, "role": "admin"}).encode()).decode()
    reply = client.get("/order/", headers=bearer(f"{header}.{forged}.{signature}"))
    assert reply.status_code == 401
    assert reply.get_json()["data"]["error"] == "invalid_token"


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
