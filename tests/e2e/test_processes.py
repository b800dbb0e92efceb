"""Real processes: ``waitress-serve wsgi:application`` on loopback ports, as deployed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from support import BIN, PASSWORD, ROOT, Server, bearer, server_environment, unique

pytestmark = pytest.mark.e2e


def register_and_login(base: str) -> dict[str, str]:
    name = unique("walker")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert httpx.post(f"{base}/user/register", json=body).status_code == 201
    login = httpx.post(f"{base}/user/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200
    return login.json()["data"]


def test_register_login_info_logout_then_401(live_server: Server):
    base = live_server.url
    tokens = register_and_login(base)
    info = httpx.get(f"{base}/user/info", headers=bearer(tokens["token"]))
    assert info.status_code == 200
    assert info.headers["Content-Type"] == "application/json"
    assert httpx.post(f"{base}/user/logout", headers=bearer(tokens["token"])).status_code == 200
    after = httpx.get(f"{base}/user/info", headers=bearer(tokens["token"]))
    assert after.status_code == 401
    assert after.json() == {
        "code": 401,
        "msg": "token has been revoked",
        "data": {"error": "token_revoked"},
    }


def test_production_refuses_to_start_without_a_secret(tmp_path: Path):
    env = server_environment(tmp_path)
    del env["MICROSHOP_JWT_SECRET"]
    result = subprocess.run(
        [BIN / "waitress-serve", "--listen=127.0.0.1:1", "wsgi:application"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "microshop: MICROSHOP_JWT_SECRET is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_logout_holds_across_restarts_and_processes(tmp_path: Path, server_urls: dict[str, str]):
    first = Server.start(tmp_path / "a", databases=server_urls)
    second = Server.start(tmp_path / "b", databases=server_urls, init_db=False)  # same databases
    try:
        tokens = register_and_login(first.url)
        assert (
            httpx.get(f"{second.url}/user/me", headers=bearer(tokens["token"])).status_code == 200
        )
        assert (
            httpx.post(f"{first.url}/user/logout", headers=bearer(tokens["token"])).status_code
            == 200
        )
        refused = httpx.get(f"{second.url}/user/me", headers=bearer(tokens["token"]))
        assert refused.json()["data"]["error"] == "token_revoked"
    finally:
        first.stop()
        second.stop()
    restarted = Server.start(tmp_path / "a", databases=server_urls, init_db=False)
    try:
        refused = httpx.get(f"{restarted.url}/user/me", headers=bearer(tokens["token"]))
        assert refused.json()["data"]["error"] == "token_revoked"
        refreshed = httpx.post(
            f"{restarted.url}/user/refresh", headers=bearer(tokens["refresh_token"])
        )
        assert refreshed.status_code == 200
    finally:
        restarted.stop()


def test_development_tokens_survive_a_restart(tmp_path: Path):
    """With no secret configured, development keeps the one it made in the instance folder.
    On SQLite only: the secret is a file, whatever the engine of the databases."""
    env = {"MICROSHOP_ENV": "development", "MICROSHOP_JWT_SECRET": ""}
    server = Server.start(tmp_path, **env)
    try:
        tokens = register_and_login(server.url)
    finally:
        server.stop()
    server = Server.start(tmp_path, init_db=False, **env)
    try:
        assert (
            httpx.get(f"{server.url}/user/me", headers=bearer(tokens["token"])).status_code == 200
        )
    finally:
        server.stop()
    assert (tmp_path / "jwt-secret").exists()


def test_bad_input_through_waitress_is_never_html_or_500(live_servers):
    """On SQLite only: no probe gets past parsing to a database."""
    base = live_servers("sqlite").url
    probes = [
        ("POST", "/user/register", b'{"username": ', {"Content-Type": "application/json"}),
        ("POST", "/user/login", b"\x00\x01\x02", {}),
        ("POST", "/user/register", b"x" * (70 * 1024), {}),
        ("GET", "/user/me", None, {"Authorization": "Bearer " + "a" * 4000}),
        ("DELETE", "/user/register", None, {}),
        ("GET", "/%ff%fe", None, {}),
        ("GET", "/user/me?" + "a=1&" * 500, None, {}),
    ]
    for method, path, body, headers in probes:
        reply = httpx.request(method, base + path, content=body, headers=headers)
        assert 400 <= reply.status_code < 500, (path, reply.text)
        assert reply.headers["Content-Type"] == "application/json", path
        assert reply.json()["code"] == reply.status_code
