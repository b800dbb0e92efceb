"""Bad input everywhere: never a 5xx, always the JSON envelope of API.md.

A parametrized sweep over the composed application in production mode, on SQLite and
PostgreSQL: each hostile value (wrong JSON types, null, huge numbers, NaN and Infinity,
long strings, NUL bytes, lone surrogates, injection strings, deep nesting) goes into each
field of each POST route with the other fields valid; hostile raw bodies go to every POST
route; hostile path segments and query strings go to the by-id and list routes; hostile
``Authorization``, ``X-Request-ID`` and ``Idempotency-Key`` headers go to authenticated
routes. Every answer must be below 500 and the envelope: ``application/json``, ``code`` equal
to the status (0 on success), ``msg`` a string, and a ``data.error`` slug on a 4xx.

One application per backend serves the whole module (a fresh one per case would take
minutes); the few cases whose hostile value is also a valid one are allowed to succeed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from support import (
    BACKENDS,
    PASSWORD,
    bearer,
    database_urls,
    make_settings,
    ready_application,
    unique,
)
from werkzeug.test import Client, TestResponse

from app.kit.pagination import encode_cursor
from app.runtime.composition import Application

SLUG = re.compile(r"^[a-z][a-z_]*[a-z]$")
SANE_REQUEST_ID = re.compile(r"^[\x20-\x7e]{1,128}$")
NEW_PASSWORD = "another-correct-horse"


# --- the hostile values: JSON text, so that what no json.dumps writes can be sent too ----


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


HOSTILE_VALUES: list[tuple[str, str]] = [
    ("zero", "0"),
    ("minus-one", "-1"),
    ("fraction", "1.5"),
    ("huge", str(10**30)),
    ("huge-negative", str(-(10**30))),
    ("1e308-number", "1e308"),
    ("1e999-number", "1e999"),
    ("5000-digit-number", "9" * 5000),
    ("NaN-string", '"NaN"'),
    ("Infinity-string", '"Infinity"'),
    ("-Infinity-string", '"-Infinity"'),
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("empty-list", "[]"),
    ("empty-object", "{}"),
    ("list", "[1,2]"),
    ("mongo-operator", '{"$gt": ""}'),
    ("empty-string", '""'),
    ("blank-string", '" "'),
    ("10000-chars", json.dumps("x" * 10_000)),
    ("nul-byte", '"a\\u0000b"'),
    ("lone-surrogate", '"\\ud800"'),
    ("sql-injection", json.dumps("' OR '1'='1")),
    ("script", json.dumps("<script>alert(1)</script>")),
    ("path-traversal", json.dumps("../../etc/passwd")),
    ("percent-00", '"%00"'),
    ("jndi", json.dumps("${jndi:ldap://x}")),
    ("1e999-string", '"1e999"'),
    ("hex-string", '"0x10"'),
    ("unicode", json.dumps("\u00e9\U0001f600\u202e")),
    ("nested-200", _nested(200)),
]
"""(id, the value as JSON text)."""

RAW_BODIES: list[tuple[str, bytes]] = [
    ("bare-NaN", b"NaN"),
    ("bare-Infinity", b"Infinity"),
    ("bare--Infinity", b"-Infinity"),
    ("NaN-in-object", b'{"a": NaN}'),
    ("invalid-utf8", b'{"a": "\xff\xfe\xc3\x28"}'),
    ("60KiB-json-string", json.dumps("x" * 60 * 1024).encode()),
    ("over-64KiB", json.dumps({"a": "x" * 70 * 1024}).encode()),
    ("deep-array", b"[" * 20_000),
    ("deep-array-1000-valid", b"[" * 1_000 + b"]" * 1_000),
    ("deep-object", _nested(5_000).encode()),
    ("json-null", b"null"),
    ("json-list", b"[1, 2]"),
    ("truncated", b'{"a": '),
    ("nul-bytes", b"\x00\x00\x00"),
]


# --- the module's world: one application, accounts and a pending and a paid order ----------


@dataclass
class Account:
    username: str
    password: str = PASSWORD
    id: int = 0
    access: str = ""
    refresh: str = ""


@dataclass
class World:
    client: Client
    user: Account
    """Registered, logged in: places orders and pays them."""
    logout_user: Account
    """Logs out once per logout case, with a fresh access token from its refresh token."""
    password_user: Account
    """Its password is changed by the cases whose hostile new password is a valid one."""
    pending_order_id: int = 0
    payment_id: int = 0


def send(
    client: Client,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
) -> TestResponse:
    return client.open(
        path,
        method=method,
        data=body,
        headers={
            **({"Content-Type": "application/json"} if body is not None else {}),
            **(headers or {}),
        },
        environ_overrides=environ,
    )


def call_json(client: Client, method: str, path: str, payload: Any, token: str = "") -> Any:
    response = send(
        client,
        method,
        path,
        body=None if payload is None else json.dumps(payload).encode(),  # None: no body
        headers=bearer(token) if token else None,
    )
    assert response.status_code < 300, (path, response.status_code, response.get_data())
    return response.get_json()["data"]


def signed_up(client: Client) -> Account:
    account = Account(unique("hostile"))
    data = call_json(
        client,
        "POST",
        "/user/register",
        {
            "username": account.username,
            "password": account.password,
            "email": f"{account.username}@example.com",
        },
    )
    account.id = data["id"]
    return log_in(client, account)


def log_in(client: Client, account: Account) -> Account:
    data = call_json(
        client, "POST", "/user/login", {"username": account.username, "password": account.password}
    )
    account.access, account.refresh = data["access_token"], data["refresh_token"]
    return account


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    folder: Path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    settings = make_settings(
        folder,
        database_urls(request.param, folder),
        login_rate_limit="100000 per minute",  # the sweep logs in far more than 10 times
    )
    application: Application = ready_application(settings)
    try:
        client = Client(application)
        # Row 1 of every table belongs to a decoy, so a segment that aliases id 1 ("0001")
        # reaches another user's row (403) rather than changing the sweep's own.
        decoy = signed_up(client)
        decoy_order = call_json(
            client, "POST", "/order/", {"product": "pen", "price": "1.00"}, decoy.access
        )["id"]
        call_json(client, "POST", "/payment/", {"order_id": decoy_order}, decoy.access)
        user = signed_up(client)
        world = World(client, user, signed_up(client), signed_up(client))
        world.pending_order_id = call_json(
            client, "POST", "/order/", {"product": "pen", "price": "19.99"}, user.access
        )["id"]
        paid_order = call_json(
            client, "POST", "/order/", {"product": "ink", "price": "5.00"}, user.access
        )["id"]
        world.payment_id = call_json(
            client, "POST", "/payment/", {"order_id": paid_order}, user.access
        )["id"]
        yield world
    finally:
        application.dispose()


# --- the envelope -------------------------------------------------------------------------


def describe(method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> str:
    shown = body if body is None or len(body) <= 300 else body[:300] + b"...(%d bytes)" % len(body)
    return f"{method} {path[:300]} headers={headers} body={shown!r}"


def assert_envelope(response: TestResponse, request_text: str) -> dict[str, Any]:
    """The answer of API.md to bad input: below 500, JSON, the envelope; returns its body."""
    status = response.status_code
    text = response.get_data()
    seen = f"{request_text}\n  -> {status} {response.headers.get('Content-Type')} {text[:500]!r}"
    assert status < 500, seen
    assert response.mimetype == "application/json", seen
    try:
        body = json.loads(text)
    except ValueError:
        pytest.fail(f"not JSON: {seen}")
    assert isinstance(body, dict), seen
    assert set(body) == {"code", "msg", "data"}, seen
    assert body["code"] == (0 if status < 400 else status), seen
    assert isinstance(body["msg"], str), seen
    assert body["msg"], seen
    assert isinstance(body["data"], dict), seen
    if 400 <= status < 500:
        slug = body["data"].get("error")
        assert isinstance(slug, str), seen
        assert SLUG.match(slug), seen
        if slug == "validation_error":
            fields = body["data"].get("fields")
            assert isinstance(fields, dict), seen
            assert fields, seen
            assert all(isinstance(v, str) and v for v in fields.values()), seen
    request_id = response.headers.get("X-Request-ID", "")
    assert SANE_REQUEST_ID.match(request_id), seen
    return body


# --- POST routes, field by field -----------------------------------------------------------


@dataclass(frozen=True)
class PostRoute:
    name: str
    path: str
    """``{payment}`` stands for the paid payment's id."""
    fields: tuple[str, ...]
    valid: Callable[[World], dict[str, Any]]
    """The other fields' valid values, made afresh for each case."""
    token: Callable[[World], str] | None = None


def _registration(_world: World) -> dict[str, Any]:
    username = unique("sweep")
    return {"username": username, "password": PASSWORD, "email": f"{username}@example.com"}


def _fresh_logout_token(world: World) -> str:
    """A new access token for each logout case: a successful logout revokes it."""
    return call_json(world.client, "POST", "/user/refresh", None, world.logout_user.refresh)[
        "access_token"
    ]


def _order(world: World) -> dict[str, Any]:
    return {
        "product": "pen",
        "price": "19.99",
        "quantity": 1,
        "currency": "USD",
        "userid": world.user.id,
    }


def _payment(world: World) -> dict[str, Any]:
    return {"order_id": world.pending_order_id, "payment_method": "tok_visa"}


def _user_token(world: World) -> str:
    return world.user.access


POST_ROUTES = [
    PostRoute("register", "/user/register", ("username", "password", "email"), _registration),
    PostRoute(
        "login",
        "/user/login",
        ("username", "password"),
        lambda world: {"username": world.user.username, "password": PASSWORD},
    ),
    PostRoute("logout", "/user/logout", ("refresh_token",), lambda _: {}, _fresh_logout_token),
    PostRoute(
        "password",
        "/user/password",
        ("old_password", "new_password"),
        lambda world: {"old_password": world.password_user.password, "new_password": NEW_PASSWORD},
        lambda world: world.password_user.access,
    ),
    *(
        PostRoute(
            f"order{path}",
            path,
            ("product", "price", "quantity", "currency", "userid"),
            _order,
            _user_token,
        )
        for path in ("/order/", "/order/create")
    ),
    *(
        PostRoute(f"payment{path}", path, ("order_id", "payment_method"), _payment, _user_token)
        for path in ("/payment/", "/payment/pay")
    ),
    *(
        PostRoute(f"refund{path}", path, ("amount",), lambda _: {}, _user_token)
        for path in ("/payment/{payment}/refund", "/payment/refund/{payment}")
    ),
]


def _restore_password(world: World, changed_to: str) -> None:
    """A hostile new password that is a valid one was set: put the old one back."""
    account = world.password_user
    account.password = changed_to
    log_in(world.client, account)
    call_json(
        world.client,
        "POST",
        "/user/password",
        {"old_password": changed_to, "new_password": PASSWORD},
        account.access,
    )
    account.password = PASSWORD
    log_in(world.client, account)


def with_raw_value(valid: dict[str, Any], name: str, raw: str) -> bytes:
    """``valid`` as JSON with ``name`` set to the JSON text ``raw``, written as it is."""
    placeholder = "\x01hostile\x01"
    text = json.dumps({**valid, name: placeholder})
    return text.replace(json.dumps(placeholder), raw, 1).encode()


FIELD_CASES = [
    pytest.param(route, name, raw, id=f"{route.name}-{name}-{value_id}")
    for route in POST_ROUTES
    for name in route.fields
    for value_id, raw in HOSTILE_VALUES
]


@pytest.mark.parametrize(("route", "name", "raw"), FIELD_CASES)
def test_a_hostile_field_gets_the_envelope(world: World, route: PostRoute, name: str, raw: str):
    path = route.path.format(payment=world.payment_id)
    body = with_raw_value(route.valid(world), name, raw)
    headers = bearer(route.token(world)) if route.token else None
    response = send(world.client, "POST", path, body=body, headers=headers)
    reply = assert_envelope(response, describe("POST", path, body, headers))
    if response.status_code == 422 and reply["data"]["error"] == "validation_error":
        named = reply["data"]["fields"]
        assert any(key == name or key.startswith(f"{name}.") for key in named), (name, named)
    if route.name == "password" and name == "new_password" and response.status_code == 200:
        _restore_password(world, json.loads(raw))


# --- POST routes, raw bodies -----------------------------------------------------------------


RAW_ROUTES: list[tuple[str, str, Callable[[World], str] | None, bool]] = [
    ("register", "/user/register", None, False),
    ("login", "/user/login", None, False),
    ("logout", "/user/logout", _fresh_logout_token, False),
    ("password", "/user/password", lambda world: world.password_user.access, False),
    ("refresh", "/user/refresh", lambda world: world.logout_user.refresh, False),
    ("order", "/order/", _user_token, False),
    ("order-create", "/order/create", _user_token, False),
    ("pay", "/payment/", _user_token, False),
    ("pay-legacy", "/payment/pay", _user_token, False),
    ("pay-idempotent", "/payment/", _user_token, True),
    ("pay-legacy-idempotent", "/payment/pay", _user_token, True),
    ("refund", "/payment/{payment}/refund", _user_token, False),
    ("refund-legacy", "/payment/refund/{payment}", _user_token, False),
    ("refund-idempotent", "/payment/{payment}/refund", _user_token, True),
    ("refund-legacy-idempotent", "/payment/refund/{payment}", _user_token, True),
]
"""(id, path, the token it needs, whether it also sends an ``Idempotency-Key``)."""


@pytest.mark.parametrize(
    ("path", "token", "idempotent"),
    [pytest.param(path, token, keyed, id=name) for name, path, token, keyed in RAW_ROUTES],
)
@pytest.mark.parametrize("raw", [pytest.param(raw, id=name) for name, raw in RAW_BODIES])
def test_a_hostile_body_gets_the_envelope(
    world: World,
    path: str,
    token: Callable[[World], str] | None,
    idempotent: bool,
    raw: bytes,
):
    path = path.format(payment=world.payment_id)
    headers = bearer(token(world)) if token else {}
    if idempotent:
        headers["Idempotency-Key"] = unique("key")
    response = send(world.client, "POST", path, body=raw, headers=headers)
    reply = assert_envelope(response, describe("POST", path, raw, headers))
    assert 400 <= response.status_code < 500, reply  # /user/refresh takes no body: 422


# --- by-id routes, hostile path segments -------------------------------------------------------


HOSTILE_SEGMENTS: list[tuple[str, str]] = [
    ("zero", "0"),
    ("minus-one", "-1"),
    ("20-digits", "99999999999999999999"),
    ("2^31", str(2**31)),
    ("2^63", str(2**63)),
    ("fraction", "1.5"),
    ("plus", "+1"),
    ("leading-zeros", "0001"),
    ("1e3", "1e3"),
    ("hex", "0x10"),
    ("NaN", "NaN"),
    ("null", "null"),
    ("pct-00", "%00"),
    ("dotdot-slash", "..%2F"),
    ("dotdot-encoded", "%2e%2e"),
    ("pct-ff", "%ff"),
    ("surrogate-utf8", "%ED%A0%80"),
    ("arabic-indic-digit", "%D9%A1"),
    ("fullwidth-digit", "%EF%BC%91"),
    ("newline", "%0A1"),
    ("space", "%201"),
    ("5000-chars", "a" * 5000),
    ("5000-digits", "9" * 5000),
    ("sql", quote("1' OR '1'='1", safe="")),
    ("script", quote("<script>alert(1)</script>", safe="")),
    ("jndi", quote("${jndi:ldap://x}", safe="")),
]

BY_ID_ROUTES: list[tuple[str, str]] = [
    ("GET", "/user/{}"),
    ("GET", "/order/{}"),
    ("GET", "/order/query/{}"),
    ("DELETE", "/order/{}"),
    ("DELETE", "/order/cancel/{}"),
    ("GET", "/payment/{}"),
    ("GET", "/payment/query/{}"),
    ("POST", "/payment/{}/refund"),
    ("POST", "/payment/refund/{}"),
    ("GET", "/{}"),
    ("GET", "/order/internal/orders/{}"),
]


@pytest.mark.parametrize(
    ("method", "template"),
    [pytest.param(method, template, id=f"{method}{template}") for method, template in BY_ID_ROUTES],
)
@pytest.mark.parametrize(
    "segment", [pytest.param(value, id=name) for name, value in HOSTILE_SEGMENTS]
)
def test_a_hostile_path_segment_gets_the_envelope(
    world: World, method: str, template: str, segment: str
):
    path = template.format(segment)
    headers = bearer(world.user.access)
    response = send(world.client, method, path, headers=headers)
    reply = assert_envelope(response, describe(method, path, None, headers))
    assert 400 <= response.status_code < 500, reply


# --- list routes, hostile query strings ----------------------------------------------------


def _q(value: str) -> str:
    return quote(value, safe="")


QUERY_VALUES: list[tuple[str, str]] = [
    ("zero", "0"),
    ("minus-one", "-1"),
    ("fraction", "1.5"),
    ("huge", str(10**30)),
    ("huge-negative", str(-(10**30))),
    ("1e308", "1e308"),
    ("5000-digits", "9" * 5000),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("list", _q("[1,2]")),
    ("object", _q("{}")),
    ("mongo-operator", _q('{"$gt": ""}')),
    ("empty", ""),
    ("blank", "%20"),
    ("10000-chars", "x" * 10_000),
    ("nul-byte", "a%00b"),
    ("surrogate-utf8", "%ED%A0%80"),
    ("pct-ff", "%ff"),
    ("sql", _q("' OR '1'='1")),
    ("script", _q("<script>alert(1)</script>")),
    ("path-traversal", _q("../../etc/passwd")),
    ("literal-pct-00", _q("%00")),
    ("jndi", _q("${jndi:ldap://x}")),
    ("1e999", "1e999"),
    ("hex", "0x10"),
    ("nested-200", _q(_nested(200))),
    ("encoded-id-2^40", encode_cursor(2**40)),
    ("encoded-id-10^12", encode_cursor(10**12 - 1)),
    ("encoded-id-0", encode_cursor(0)),
    ("encoded-id-2^31", encode_cursor(2**31)),
    ("largest-cursor-shape", "c" + "z" * 7),
    ("over-long-cursor", "c" + "z" * 8),
    ("uppercase-cursor", "cZ"),
    ("base64-cursor", "djE6LTE"),
]
"""Already percent-encoded, so that what no UTF-8 text is can be sent too."""

QUERY_SHAPES: list[tuple[str, str]] = [
    ("repeated-limit", "limit=1&limit=2"),
    ("repeated-cursor", f"cursor={encode_cursor(5)}&cursor={encode_cursor(6)}"),
    ("unknown", "foo=bar"),
    ("unknown-and-valid", "limit=5&role=admin"),
    ("bracket-name", "limit[]=1"),
    ("operator-name", "limit[$gt]=0"),
    ("empty-name", "=1"),
    ("no-value", "limit"),
    ("only-ampersands", "&&&"),
    ("nul-name", "%00=1"),
    ("ff-name", "%ff=1"),
    ("long-name", "x" * 5000 + "=1"),
    ("300-unknown", "&".join(f"p{i}=1" for i in range(300))),
    ("semicolons", "limit=1;limit=2"),
    ("plus-space", "limit=+1"),
]


@pytest.mark.parametrize("path", ["/order/", "/payment/"])
@pytest.mark.parametrize(
    "query",
    [
        pytest.param(f"{name}={value}", id=f"{name}-{value_id}")
        for name in ("limit", "status", "cursor", "order_id")
        for value_id, value in QUERY_VALUES
    ]
    + [pytest.param(query, id=name) for name, query in QUERY_SHAPES],
)
def test_a_hostile_query_gets_the_envelope(world: World, path: str, query: str):
    url = f"{path}?{query}"
    headers = bearer(world.user.access)
    response = send(world.client, "GET", url, headers=headers)
    assert_envelope(response, describe("GET", url, None, headers))


# --- hostile headers -------------------------------------------------------------------------


def _authorization_values(token: str) -> list[tuple[str, str]]:
    return [
        ("10000-chars", "Bearer " + "x" * 10_000),
        ("10000-chars-no-scheme", "x" * 10_000),
        ("garbage", "Bearer !@#$%^&*()_+{}|:<>?"),
        ("three-dots", "Bearer ..."),
        ("a.b.c", "Bearer a.b.c"),
        ("basic", "Basic dXNlcjpwYXNzd29yZA=="),
        ("scheme-only", "Bearer"),
        ("scheme-and-space", "Bearer "),
        ("lowercase-scheme", f"bearer {token}"),
        ("double-space", f"Bearer  {token}"),
        ("two-tokens-space", f"Bearer {token} Bearer {token}"),
        ("two-tokens-comma", f"Bearer {token}, Bearer {token}"),
        ("token-twice", f"Bearer {token}{token}"),
        ("token-plus-junk", f"Bearer {token}.junk"),
        ("latin1", "Bearer \u00e9\u00e8"),
        ("newline", f"Bearer {token}\r\nX-Injected: 1"),
        ("tab", f"Bearer\t{token}"),
    ]


REQUEST_IDS: list[tuple[str, str]] = [
    ("10000-chars", "r" * 10_000),
    ("129-chars", "r" * 129),
    ("newline", "abc\ndef"),
    ("crlf-header-injection", "abc\r\nSet-Cookie: session=1"),
    ("nul", "abc\x00def"),
    ("latin1", "caf\u00e9"),
    ("empty", ""),
    ("tab", "a\tb"),
]

AUTHENTICATED_GETS = ["/user/me", "/order/", "/payment/", f"/order/{2**31 - 1}"]


@pytest.mark.parametrize("path", AUTHENTICATED_GETS)
@pytest.mark.parametrize("case", [name for name, _ in _authorization_values("t")])
def test_a_hostile_authorization_header_gets_the_envelope(world: World, path: str, case: str):
    value = dict(_authorization_values(world.user.access))[case]
    environ = {"HTTP_AUTHORIZATION": value}
    response = send(world.client, "GET", path, environ=environ)
    assert_envelope(response, describe("GET", path, None, {"Authorization": value[:200]}))


@pytest.mark.parametrize("path", AUTHENTICATED_GETS)
@pytest.mark.parametrize(("request_id"), [pytest.param(v, id=name) for name, v in REQUEST_IDS])
def test_a_hostile_request_id_is_replaced_not_echoed(world: World, path: str, request_id: str):
    environ = {"HTTP_X_REQUEST_ID": request_id}
    response = send(world.client, "GET", path, headers=bearer(world.user.access), environ=environ)
    assert_envelope(response, describe("GET", path, None, {"X-Request-ID": request_id[:200]}))
    assert response.status_code in (200, 404), response.get_data()  # the token is good
    assert response.headers["X-Request-ID"] != request_id


IDEMPOTENCY_KEYS: list[tuple[str, str]] = [
    ("empty", ""),
    ("256-chars", "k" * 256),
    ("10000-chars", "k" * 10_000),
    ("newline", "abc\ndef"),
    ("nul", "abc\x00def"),
    ("latin1", "caf\u00e9"),
    ("sql", "' OR '1'='1"),
    ("255-chars", "k" * 255),
    ("blank", " "),
]


@pytest.mark.parametrize("kind", ["pay", "refund"])
@pytest.mark.parametrize("key", [pytest.param(v, id=name) for name, v in IDEMPOTENCY_KEYS])
def test_a_hostile_idempotency_key_gets_the_envelope(world: World, kind: str, key: str):
    if kind == "pay":  # a declined card records a failed payment: the order stays pending
        path = "/payment/"
        payload = {"order_id": world.pending_order_id, "payment_method": "tok_chargeDeclined"}
    else:  # an amount that is never valid: nothing is refunded
        path, payload = f"/payment/{world.payment_id}/refund", {"amount": 0}
    body = json.dumps(payload).encode()
    headers = bearer(world.user.access)
    environ = {"HTTP_IDEMPOTENCY_KEY": key}
    response = send(world.client, "POST", path, body=body, headers=headers, environ=environ)
    assert_envelope(response, describe("POST", path, body, {"Idempotency-Key": key[:200]}))
    assert 400 <= response.status_code < 500
