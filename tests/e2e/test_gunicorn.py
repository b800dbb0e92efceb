"""Many cores: ``gunicorn -k gthread -w 2 wsgi:application``, each worker with its own
application (engines, sweepers, deny list in memory) built after the fork."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import (
    BIN,
    PASSWORD,
    ROOT,
    bearer,
    database_env,
    free_port,
    server_environment,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e

WORKERS = 2


@pytest.fixture
def gunicorn(tmp_path: Path, server_urls: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """The shop under gunicorn on a loopback port on the backend under test (pools made
    before a fork would be shared by the workers), and its access log (``pid status``)."""
    env = server_environment(tmp_path, **database_env(server_urls))
    subprocess.run(
        [BIN / "microshop", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    port, access_log, log = free_port(), tmp_path / "access.log", tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                BIN / "gunicorn",
                "-k",
                "gthread",
                f"--workers={WORKERS}",
                "--threads=4",
                f"--bind=127.0.0.1:{port}",
                f"--access-logfile={access_log}",
                "--access-logformat=%(p)s %(s)s",
                "wsgi:application",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        yield base, access_log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers_by_worker(access_log: Path) -> dict[str, set[str]]:
    by_pid: dict[str, set[str]] = {}
    for line in access_log.read_text().splitlines():
        pid, status = line.split()
        by_pid.setdefault(pid, set()).add(status)
    return by_pid


def test_a_logout_through_one_worker_is_refused_by_every_worker_within_a_second(gunicorn):
    base, access_log = gunicorn
    name = unique("worker")
    body = {"username": name, "password": PASSWORD, "email": f"{name}@example.com"}
    assert httpx.post(f"{base}/user/register", json=body).status_code == 201
    login = httpx.post(f"{base}/user/login", json={"username": name, "password": PASSWORD})
    token = bearer(login.json()["data"]["access_token"])
    for _ in range(20):  # a new connection each: both workers load their deny lists
        assert httpx.get(f"{base}/order/", headers=token).status_code == 200

    assert httpx.post(f"{base}/user/logout", headers=token).status_code == 200
    time.sleep(1.0)
    access_log.write_text("")  # from here on, only the answers after the second
    for _ in range(20):
        reply = httpx.get(f"{base}/order/", headers=token)
        assert reply.status_code == 401, reply.text
        assert reply.json()["data"]["error"] == "token_revoked"
    # gunicorn writes its access log after the answer
    assert wait_for(lambda: len(access_log.read_text().splitlines()) == 20, 5)
    workers = answers_by_worker(access_log)
    assert len(workers) == WORKERS, workers  # every worker refused it
    assert all(statuses == {"401"} for statuses in workers.values())
