"""``POST /user/password`` is rate limited per user, as login is per address and username:
a stolen access token cannot be used to guess its user's current password.

The limit as a setting is tested on SQLite only: it is counted in memory, not in the
database; the ``users`` fixture's tests run on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import PASSWORD, ServiceClient, assert_error, database_urls, make_settings
from werkzeug.test import Client

from app.kit.service import parts_of
from app.settings import ConfigError
from user_service import create_app

NEW_PASSWORD = "a-new-password-42"


def change(users: ServiceClient, headers: dict[str, str], old: str, new: str = NEW_PASSWORD):
    return users.post("/password", json={"old_password": old, "new_password": new}, headers=headers)


def test_wrong_current_passwords_are_limited_per_user(users: ServiceClient):
    account = users.signed_up()
    for _ in range(10):
        reply = change(users, account.headers, "wrong-password-1")
        assert_error(reply, 401, "invalid_credentials")
        assert "Retry-After" not in reply.headers
    limited = change(users, account.headers, "wrong-password-1")
    assert_error(limited, 429, "rate_limited")
    assert "password" in limited.json["msg"]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert change(users, account.headers, PASSWORD).status_code == 429  # the right one too
    other = users.signed_up()
    assert change(users, other.headers, PASSWORD).status_code == 200  # per user


def test_a_second_token_of_the_same_user_shares_the_limit(users: ServiceClient):
    """Per user, not per token or address: a new login does not buy new guesses."""
    account = users.signed_up()
    for _ in range(10):
        change(users, account.headers, "wrong-password-1")
    again = users.login(account)
    assert_error(change(users, again.headers, "wrong-password-1"), 429, "rate_limited")


def test_what_is_not_a_guess_is_not_counted(users: ServiceClient):
    """Refused bodies and requests without a valid token guess nothing: they keep their
    own answers (422, 401 for the token) and leave the user's guesses untouched."""
    account = users.signed_up()
    for _ in range(12):
        reply = users.post("/password", json={"old_password": PASSWORD}, headers=account.headers)
        assert_error(reply, 422, "validation_error")
        no_token = users.post("/password", json={"old_password": "x", "new_password": "y" * 8})
        assert_error(no_token, 401, "missing_token")
    assert change(users, account.headers, PASSWORD).status_code == 200


def test_the_password_limit_is_a_setting(tmp_path: Path):
    settings = make_settings(
        tmp_path, database_urls("sqlite", tmp_path), password_rate_limit="2 per minute"
    )
    app = create_app(settings)
    parts_of(app).database.create_schema()
    client = Client(app)
    body = {"username": "limited", "password": PASSWORD, "email": "limited@example.com"}
    assert client.post("/register", json=body).status_code == 201
    login = {"username": "limited", "password": PASSWORD}
    token = client.post("/login", json=login).get_json()["data"]["access_token"]
    wrong = {"old_password": "wrong-password-1", "new_password": NEW_PASSWORD}
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [client.post("/password", json=wrong, headers=headers).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    parts_of(app).database.dispose()


def test_a_password_limit_that_cannot_be_parsed_builds_no_service(tmp_path: Path):
    with pytest.raises(ConfigError, match="MICROSHOP_PASSWORD_RATE_LIMIT"):
        make_settings(tmp_path, {}, password_rate_limit="often")
