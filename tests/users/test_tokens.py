"""The token probe set of RELIABILITY.md: every bad token is a 401, never a 422 or 500."""

from __future__ import annotations

import base64
import json
import time
import warnings

import pytest
from jwt.warnings import InsecureKeyLengthWarning
from support import ServiceClient, access_claims, bearer, forge


def _unsigned(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _hs512(claims: dict) -> str:
    """Signed with the right key, by the wrong algorithm (PyJWT warns: the key is short)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return forge(claims, algorithm="HS512")


def test_a_forged_token_with_the_right_key_is_accepted(users: ServiceClient):
    """The control: the probes below differ from this token in one thing each."""
    account = users.signed_up()
    assert users.get("/me", headers=bearer(forge(access_claims(account.id)))).status_code == 200


@pytest.mark.parametrize(
    ("name", "make", "slug"),
    [
        ("alg none", lambda uid: _unsigned(access_claims(uid)), "invalid_token"),
        ("wrong key", lambda uid: forge(access_claims(uid), key="k" * 40), "invalid_token"),
        ("HS512", lambda uid: _hs512(access_claims(uid)), "invalid_token"),
        (
            "expired",
            lambda uid: forge(access_claims(uid, exp=int(time.time()) - 60)),
            "token_expired",
        ),
        (
            "refresh as access",
            lambda uid: forge(access_claims(uid, type="refresh")),
            "invalid_token",
        ),
        ("unknown crit", lambda uid: forge(access_claims(uid), crit=["exp"]), "invalid_token"),
        ("integer sub", lambda uid: forge(access_claims(uid, sub=uid)), "invalid_token"),
        ("name as sub", lambda uid: forge(access_claims(uid, sub="alice")), "invalid_token"),
        ("unknown role", lambda uid: forge(access_claims(uid, role="root")), "invalid_token"),
        (
            "no jti",
            lambda uid: forge({k: v for k, v in access_claims(uid).items() if k != "jti"}),
            "invalid_token",
        ),
        ("old version", lambda uid: forge(access_claims(uid, ver=7)), "token_revoked"),
        ("user gone", lambda uid: forge(access_claims(uid + 10_000)), "token_revoked"),
        ("garbage", lambda uid: "not.a.token", "invalid_token"),
        ("tampered", lambda uid: forge(access_claims(uid))[:-4] + "AAAA", "invalid_token"),
    ],
)
def test_bad_tokens_get_401(users: ServiceClient, name: str, make, slug: str):
    account = users.signed_up()
    reply = users.get("/me", headers=bearer(make(account.id)))
    assert reply.status_code == 401, (name, reply.text)
    assert reply.json["data"]["error"] == slug, name


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a b", "Bearer  x"]
)
def test_malformed_authorization_headers_get_401(users: ServiceClient, header: str):
    reply = users.get("/me", headers={"Authorization": header})
    assert reply.status_code == 401, reply.text
    assert reply.json["data"]["error"] in {"missing_token", "invalid_token"}


def test_a_token_in_the_query_string_is_not_read(users: ServiceClient):
    account = users.signed_up()
    reply = users.get("/me", query_string={"jwt": account.access, "access_token": account.access})
    assert reply.status_code == 401
    assert reply.json["data"]["error"] == "missing_token"
