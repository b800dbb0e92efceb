"""With ``MICROSHOP_REDIS_URL`` the login limit is shared by every process that serves.

On SQLite only: the limit lives in Redis, whatever the engine of the accounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import PASSWORD, database_urls, make_settings, unique

import user_service
from app.kit.service import parts_of

REDIS_URL = os.environ.get("MICROSHOP_TEST_REDIS_URL")


@pytest.mark.skipif(
    REDIS_URL is None and not os.environ.get("CI"), reason="MICROSHOP_TEST_REDIS_URL is not set"
)
def test_two_processes_share_one_login_limit(tmp_path: Path):
    assert REDIS_URL, "CI must set MICROSHOP_TEST_REDIS_URL"
    settings = make_settings(tmp_path, database_urls("sqlite", tmp_path), redis_url=REDIS_URL)
    first, second = user_service.create_app(settings), user_service.create_app(settings)
    parts_of(first).database.create_schema()
    try:
        name = unique()
        body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
        assert first.test_client().post("/register", json=body).status_code == 201
        wrong = {"username": name, "password": "wrong-password"}
        for app in (first, second) * 5:
            assert app.test_client().post("/login", json=wrong).status_code == 401
        for app in (first, second):
            reply = app.test_client().post("/login", json=wrong)
            assert reply.status_code == 429
            assert reply.get_json()["data"]["error"] == "rate_limited"
    finally:
        parts_of(first).database.dispose()
        parts_of(second).database.dispose()
