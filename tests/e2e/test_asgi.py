"""``uvicorn asgi:application``: the shop served by an ASGI server, alone and mounted in
a Starlette app under a prefix, walked end to end through ``AsyncClient``.

On SQLite only: the ASGI bridge runs the same WSGI application, whose walk on each backend
``tests/client/test_async.py`` makes through waitress."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client.scenarios import walk_async
from support import BIN, ROOT, free_port, migrate, server_environment

from app.settings import Settings
from microshop_client import AsyncClient

pytestmark = pytest.mark.e2e

STARLETTE_HOST = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from asgi import application as shop


async def hello(request):
    return JSONResponse({"host": "starlette"})


app = Starlette(routes=[Route("/", hello), Mount("/shop", app=shop)])
"""


def serve(folder: Path, target: str, **env: str) -> Iterator[str]:
    """``uvicorn target`` on a free loopback port, stopped by its PID."""
    environment = server_environment(folder, **env)
    migrate(Settings.from_env(environment))
    port, log = free_port(), folder / "uvicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [BIN / "uvicorn", target, "--host=127.0.0.1", f"--port={port}", f"--app-dir={ROOT}"],
            env=environment,
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text()


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[str]:
    yield from serve(tmp_path, "asgi:application")


@pytest.fixture
def starlette(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "host.py").write_text(STARLETTE_HOST)
    yield from serve(tmp_path, "host:app", PYTHONPATH=str(tmp_path))


def walk(url: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(url) as shop, AsyncClient(url) as other:
            await walk_async(shop, other)

    asyncio.run(scenario())


def test_the_scenarios_run_through_uvicorn(uvicorn: str):
    walk(uvicorn)
    big = httpx.post(f"{uvicorn}/user/register", content=b"x" * 200_000)
    assert big.status_code == 413
    assert big.json()["data"]["error"] == "payload_too_large"
    assert httpx.get(f"{uvicorn}/nowhere").json()["data"]["error"] == "not_found"


def test_the_scenarios_run_mounted_in_starlette_under_a_prefix(starlette: str):
    assert httpx.get(starlette).json() == {"host": "starlette"}
    walk(f"{starlette}/shop")
    document = httpx.get(f"{starlette}/shop/order/openapi.json").json()
    assert document["servers"] == [{"url": "/shop/order"}]
    assert httpx.get(f"{starlette}/shop/").json()["data"]["services"]["user"] == "/shop/user"
