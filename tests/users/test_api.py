"""The user routes of API.md, status by status and slug by slug.

Each test runs on the Flask test client (SQLite, PostgreSQL) and through a real waitress
server in production mode (the ``users`` fixture)."""

from __future__ import annotations

from datetime import datetime

import pytest
from support import PASSWORD, Account, ServiceClient, assert_error, assert_fields, bearer, unique

USER_FIELDS = {"id", "username", "email", "role", "created_at"}
USERNAME_RULE = "must be 3 to 32 characters, each a letter A-Z or a-z, a digit, _, . or -"


def new_user(**overrides):
    name = unique()
    return {"username": name, "password": PASSWORD, "email": f"{name}@example.com", **overrides}


# --- register ----------------------------------------------------------------------------


def test_register_answers_201_with_the_public_account(users: ServiceClient):
    body = new_user()
    reply = users.post("/register", json=body)
    assert reply.status_code == 201
    assert reply.json["code"] == 0
    data = reply.json["data"]
    assert set(data) == USER_FIELDS
    assert data["username"] == body["username"]
    assert data["email"] == body["email"]
    assert data["role"] == "user"
    assert isinstance(data["id"], int)
    assert datetime.fromisoformat(data["created_at"]).utcoffset().total_seconds() == 0
    assert PASSWORD not in reply.text
    assert "argon2" not in reply.text


def test_username_is_unique_regardless_of_case(users: ServiceClient):
    body = new_user()
    assert users.post("/register", json=body).status_code == 201
    again = new_user(username=body["username"].upper())
    assert_error(users.post("/register", json=again), 409, "username_taken")


def test_email_is_unique_regardless_of_case(users: ServiceClient):
    body = new_user()
    assert users.post("/register", json=body).status_code == 201
    again = new_user(email=body["email"].upper())
    assert_error(users.post("/register", json=again), 409, "email_taken")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "a" * 33),
        ("username", "has space"),
        ("username", "semi;colon"),
        ("username", "émile"),
        ("username", 12345),
        ("username", None),
        ("username", ["alice"]),
        ("password", "short"),
        ("password", "x" * 129),
        ("password", 12345678),
        ("password", "nul\x00byte-password"),
        ("password", "lone-\ud800-surrogate"),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("email", 7),
        ("email", "x" * 250 + "@example.com"),
        ("email", "alice@shop.test"),
        ("email", "alice@SHOP.TEST"),
        ("email", "alice@mail.localhost"),
        ("email", "alice@home.arpa"),
    ],
)
def test_register_rejects_bad_field(users: ServiceClient, field: str, value):
    assert_fields(users.post("/register", json=new_user(**{field: value})), field)


@pytest.mark.parametrize("username", ["a!", "ab", "a" * 33, "has space", "émile"])
def test_a_bad_username_is_told_the_whole_rule(users: ServiceClient, username: str):
    """``a!`` is too short and has a ``!``: the message says both, not just the first."""
    message = assert_fields(users.post("/register", json=new_user(username=username)), "username")
    assert message["username"] == USERNAME_RULE


@pytest.mark.parametrize("username", ["a!", "émile"])
def test_create_admin_tells_the_whole_username_rule(users: ServiceClient, username: str):
    code, output = users.run_command(
        ["create-admin", username, "--email", "root@example.com"],
        {"MICROSHOP_ADMIN_PASSWORD": PASSWORD},
    )
    assert code == 1
    assert f"username {USERNAME_RULE}" in output


def test_register_refuses_a_repeated_key_naming_it(users: ServiceClient):
    name = unique()
    raw = (
        f'{{"username": "{name}", "password": "{PASSWORD}", "email": "{name}@example.com",'
        f' "username": "{name}x"}}'
    ).encode()
    reply = users.post("/register", data=raw, headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "invalid_json")
    assert '"username"' in reply.json["msg"]


def test_register_names_every_missing_field(users: ServiceClient):
    assert_fields(users.post("/register", json={}), "username", "password", "email")


@pytest.mark.parametrize("field", ["role", "id", "is_admin", "usernme"])
def test_register_refuses_fields_it_does_not_take(users: ServiceClient, field: str):
    body = new_user(**{field: "admin"})
    assert_fields(users.post("/register", json=body), field)
    body.pop(field)
    created = users.post("/register", json=body)  # nothing was created by the refused call
    assert created.status_code == 201
    assert created.json["data"]["role"] == "user"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'"a string"',
        b"42",
        b"null",
        b'{"a": NaN}',
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b'{"username": "a"',
    ],
)
def test_register_body_must_be_a_json_object(users: ServiceClient, raw: bytes):
    reply = users.post("/register", data=raw, headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "invalid_json")


def test_bodies_over_64_kib_get_413(users: ServiceClient):
    body = b'{"username": "' + b"a" * (64 * 1024) + b'"}'
    reply = users.post("/register", data=body, headers={"Content-Type": "application/json"})
    assert_error(reply, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/register"), ("PUT", "/me"), ("DELETE", "/login"), ("GET", "/password")],
)
def test_wrong_method_gets_405_with_allow(users: ServiceClient, method: str, path: str):
    reply = users.transport.request(method, path)
    assert_error(reply, 405, "method_not_allowed")
    assert "POST" in reply.headers["Allow"] or "GET" in reply.headers["Allow"]


@pytest.mark.parametrize("path", ["/nope", "/abc", "/1/2", "/me/extra", "/-1"])
def test_unknown_paths_get_the_json_404(users: ServiceClient, path: str):
    assert_error(users.get(path), 404, "not_found")


@pytest.mark.parametrize("user_id", ["0", "2147483648", "9223372036854775808", "9" * 30])
def test_ids_no_row_can_have_are_404_even_for_an_admin(users: ServiceClient, user_id: str):
    admin = users.admin()
    assert_error(users.get(f"/{user_id}", headers=admin.headers), 404, "not_found")


# --- login -------------------------------------------------------------------------------


def test_login_answers_the_token_pair(users: ServiceClient):
    account = users.register()
    reply = users.post("/login", json={"username": account.username, "password": PASSWORD})
    assert reply.status_code == 200
    data = reply.json["data"]
    assert set(data) == {"token", "access_token", "refresh_token", "token_type", "expires_in"}
    assert data["token"] == data["access_token"]
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 15 * 60
    assert data["refresh_token"] != data["access_token"]


def test_login_is_case_insensitive_on_the_username(users: ServiceClient):
    account = users.register()
    reply = users.post("/login", json={"username": account.username.upper(), "password": PASSWORD})
    assert reply.status_code == 200


def test_wrong_password_and_unknown_user_answer_alike(users: ServiceClient):
    account = users.register()
    wrong = users.post("/login", json={"username": account.username, "password": "wrong-pass1"})
    unknown = users.post("/login", json={"username": unique("ghost"), "password": PASSWORD})
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json == unknown.json


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"username", "password"}),
        ({"username": "alice"}, {"password"}),
        ({"username": 1, "password": 2}, {"username", "password"}),
        ({"username": "alice", "password": "x", "remember": True}, {"remember"}),
    ],
)
def test_login_validates_its_body(users: ServiceClient, body: dict, fields: set[str]):
    assert_fields(users.post("/login", json=body), *fields)


def test_login_bad_json_gets_400(users: ServiceClient):
    assert_error(users.post("/login", data=b"{"), 400, "invalid_json")


def test_login_is_rate_limited_per_address_and_username(users: ServiceClient):
    account = users.register()
    wrong = {"username": account.username, "password": "wrong-pass1"}
    for _ in range(10):
        reply = users.post("/login", json=wrong)
        assert reply.status_code == 401
        assert "Retry-After" not in reply.headers
    limited = users.post("/login", json=wrong)
    assert_error(limited, 429, "rate_limited")
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    right = {"username": account.username, "password": PASSWORD}
    assert users.post("/login", json=right).status_code == 429  # the limit holds for all
    other = users.register()
    assert (
        users.post("/login", json={"username": other.username, "password": PASSWORD}).status_code
        == 200
    )


# --- me / info / by id -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/me", "/info"])
def test_me_answers_the_callers_account(users: ServiceClient, path: str):
    account = users.signed_up()
    reply = users.get(path, headers=account.headers)
    assert reply.status_code == 200
    assert set(reply.json["data"]) == USER_FIELDS
    assert reply.json["data"]["id"] == account.id
    assert reply.json["data"]["username"] == account.username


@pytest.mark.parametrize("path", ["/me", "/info", "/1", "/logout", "/password", "/refresh"])
def test_routes_behind_a_token_answer_401_missing_token(users: ServiceClient, path: str):
    method = "GET" if path in ("/me", "/info", "/1") else "POST"
    assert_error(users.transport.request(method, path), 401, "missing_token")


def test_a_user_reads_their_own_account_by_id(users: ServiceClient):
    account = users.signed_up()
    reply = users.get(f"/{account.id}", headers=account.headers)
    assert reply.status_code == 200
    assert reply.json["data"]["id"] == account.id


def test_a_user_may_not_read_another_account(users: ServiceClient):
    alice, bob = users.signed_up(), users.signed_up()
    reply = users.get(f"/{bob.id}", headers=alice.headers)
    assert_error(reply, 403, "forbidden")
    assert bob.username not in reply.text


def test_a_user_learns_nothing_of_accounts_that_do_not_exist(users: ServiceClient):
    alice = users.signed_up()
    assert_error(users.get("/987654321", headers=alice.headers), 403, "forbidden")


def test_an_admin_reads_any_account(users: ServiceClient):
    admin, bob = users.admin(), users.signed_up()
    reply = users.get(f"/{bob.id}", headers=admin.headers)
    assert reply.status_code == 200
    assert reply.json["data"]["username"] == bob.username
    me = users.get("/me", headers=admin.headers)
    assert me.json["data"]["role"] == "admin"


def test_an_admin_gets_404_for_a_missing_account(users: ServiceClient):
    admin = users.admin()
    assert_error(users.get("/987654321", headers=admin.headers), 404, "not_found")


# --- refresh -----------------------------------------------------------------------------


def test_refresh_answers_a_new_access_token(users: ServiceClient):
    account = users.signed_up()
    reply = users.post("/refresh", headers=bearer(account.refresh))
    assert reply.status_code == 200
    data = reply.json["data"]
    assert set(data) == {"token", "access_token", "token_type", "expires_in"}
    assert data["token"] == data["access_token"]
    assert users.get("/me", headers=bearer(data["access_token"])).status_code == 200


def test_refresh_refuses_an_access_token(users: ServiceClient):
    account = users.signed_up()
    assert_error(users.post("/refresh", headers=account.headers), 401, "invalid_token")


def test_an_access_route_refuses_a_refresh_token(users: ServiceClient):
    account = users.signed_up()
    assert_error(users.get("/me", headers=bearer(account.refresh)), 401, "invalid_token")


@pytest.mark.parametrize("body", [{}, {"refresh_token": "x"}, b" "])
def test_refresh_refuses_a_body(users: ServiceClient, body):
    account = users.signed_up()
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
    reply = users.post("/refresh", headers=bearer(account.refresh), **kwargs)
    assert assert_fields(reply, "body") == {"body": "this request takes no body"}


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("post", "/refresh?x=1", "refresh"),
        ("get", "/me?x=1", "access"),
        ("get", "/info?x=1", "access"),
    ],
)
def test_routes_without_a_query_refuse_one_naming_it(
    users: ServiceClient, method: str, path: str, token: str
):
    account = users.signed_up()
    reply = getattr(users, method)(path, headers=bearer(getattr(account, token)))
    assert assert_fields(reply, "x") == {"x": "is not a field of this request"}


def test_reading_a_user_by_id_refuses_a_query_parameter_and_a_body(users: ServiceClient):
    account = users.signed_up()
    assert_fields(users.get(f"/{account.id}?fields=role", headers=account.headers), "fields")
    assert_fields(users.get(f"/{account.id}", headers=account.headers, json={}), "body")


@pytest.mark.parametrize("path", ["/register?role=admin", "/login?x=1", "/logout?all=1"])
def test_routes_with_a_body_refuse_a_query_parameter(users: ServiceClient, path: str):
    account = users.signed_up()
    body = {"username": account.username, "password": PASSWORD}
    if path.startswith("/register"):
        body = new_user()
    elif path.startswith("/logout"):
        body = {}
    reply = users.post(path, json=body, headers=account.headers)
    assert_fields(reply, path.split("?")[1].split("=")[0])
    assert users.get("/me", headers=account.headers).status_code == 200  # not logged out


# --- logout ------------------------------------------------------------------------------


def test_logout_revokes_the_access_token(users: ServiceClient):
    account = users.signed_up()
    reply = users.post("/logout", headers=account.headers)
    assert reply.status_code == 200
    assert reply.json["code"] == 0
    assert_error(users.get("/me", headers=account.headers), 401, "token_revoked")
    assert_error(users.post("/logout", headers=account.headers), 401, "token_revoked")
    assert users.post("/refresh", headers=bearer(account.refresh)).status_code == 200


def test_logout_with_the_refresh_token_revokes_both(users: ServiceClient):
    account = users.signed_up()
    reply = users.post("/logout", headers=account.headers, json={"refresh_token": account.refresh})
    assert reply.status_code == 200
    assert_error(users.get("/me", headers=account.headers), 401, "token_revoked")
    assert_error(users.post("/refresh", headers=bearer(account.refresh)), 401, "token_revoked")


def test_logout_refuses_someone_elses_refresh_token(users: ServiceClient):
    alice, bob = users.signed_up(), users.signed_up()
    reply = users.post("/logout", headers=alice.headers, json={"refresh_token": bob.refresh})
    assert_fields(reply, "refresh_token")
    assert users.post("/refresh", headers=bearer(bob.refresh)).status_code == 200
    assert users.get("/me", headers=alice.headers).status_code == 200  # nothing was revoked


@pytest.mark.parametrize("token", ["garbage", 42, None, ""])
def test_logout_validates_the_refresh_token(users: ServiceClient, token):
    account = users.signed_up()
    reply = users.post("/logout", headers=account.headers, json={"refresh_token": token})
    if token is None:
        assert reply.status_code == 200  # null means "not given"
    else:
        assert_fields(reply, "refresh_token")


def test_logout_refuses_unknown_fields_and_bad_json(users: ServiceClient):
    account = users.signed_up()
    assert_fields(users.post("/logout", headers=account.headers, json={"all": True}), "all")
    assert_error(users.post("/logout", headers=account.headers, data=b"[1"), 400, "invalid_json")


# --- password ----------------------------------------------------------------------------


def test_password_change_retires_every_earlier_token(users: ServiceClient):
    account = users.signed_up()
    second = users.login(Account(account.id, account.username, account.email, PASSWORD))
    reply = users.post(
        "/password",
        headers=account.headers,
        json={"old_password": PASSWORD, "new_password": "new-password-42"},
    )
    assert reply.status_code == 200
    assert reply.json["code"] == 0
    for token in (account.access, second.access):
        assert_error(users.get("/me", headers=bearer(token)), 401, "token_revoked")
    for token in (account.refresh, second.refresh):
        assert_error(users.post("/refresh", headers=bearer(token)), 401, "token_revoked")
    old = users.post("/login", json={"username": account.username, "password": PASSWORD})
    assert_error(old, 401, "invalid_credentials")
    fresh = users.login(Account(account.id, account.username, account.email, "new-password-42"))
    assert users.get("/me", headers=fresh.headers).status_code == 200


def test_password_change_needs_the_old_password(users: ServiceClient):
    account = users.signed_up()
    reply = users.post(
        "/password",
        headers=account.headers,
        json={"old_password": "not-the-password", "new_password": "new-password-42"},
    )
    assert_error(reply, 401, "invalid_credentials")
    assert users.get("/me", headers=account.headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"old_password": PASSWORD, "new_password": "short"}, {"new_password"}),
        ({"old_password": PASSWORD, "new_password": "y" * 129}, {"new_password"}),
        ({"new_password": "new-password-42"}, {"old_password"}),
        ({"old_password": PASSWORD, "new_password": 123456789}, {"new_password"}),
        ({"old_password": PASSWORD, "new_password": "new-password-42", "user_id": 1}, {"user_id"}),
    ],
)
def test_password_change_validates_its_body(users: ServiceClient, body: dict, fields: set[str]):
    account = users.signed_up()
    assert_fields(users.post("/password", headers=account.headers, json=body), *fields)


# --- envelope details --------------------------------------------------------------------


def test_every_response_carries_a_request_id(users: ServiceClient):
    assert len(users.get("/healthz").headers["X-Request-ID"]) >= 16
    assert users.get("/nope").headers["X-Request-ID"]


def test_a_sane_request_id_is_echoed_and_a_bad_one_replaced(users: ServiceClient):
    given = users.get("/healthz", headers={"X-Request-ID": "trace-abc-123"})
    assert given.headers["X-Request-ID"] == "trace-abc-123"
    too_long = users.get("/healthz", headers={"X-Request-ID": "x" * 129})
    assert too_long.headers["X-Request-ID"] != "x" * 129
