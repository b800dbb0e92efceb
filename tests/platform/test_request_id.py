"""``X-Request-ID`` (app/kit/request_id.py): the caller's when sane, else a fresh one."""

from __future__ import annotations

import os
import re

import pytest
from flask import Flask, g

from app.kit.request_id import HEADER, fresh_id, init_request_id


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    init_request_id(app)
    app.get("/")(lambda: {"seen": g.request_id})
    return app


def test_a_request_without_an_id_gets_a_fresh_one_each_time(app: Flask):
    client = app.test_client()
    ids = [client.get("/").headers[HEADER] for _ in range(200)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", given) for given in ids)
    assert len(set(ids)) == len(ids)
    assert client.get("/").get_json()["seen"] != client.get("/").get_json()["seen"]


@pytest.mark.parametrize("given", ["", "x" * 129, "tab\tinside", "é"])
def test_an_insane_id_is_replaced(app: Flask, given: str):
    reply = app.test_client().get("/", headers={HEADER: given})
    assert re.fullmatch(r"[0-9a-f]{32}", reply.headers[HEADER])


def test_a_sane_id_is_kept(app: Flask):
    reply = app.test_client().get("/", headers={HEADER: "order-7 retry 2"})
    assert reply.headers[HEADER] == "order-7 retry 2"
    assert reply.get_json()["seen"] == "order-7 retry 2"


def test_a_forked_worker_draws_other_ids_than_its_parent():
    """gunicorn forks its workers: each must not repeat the ids of another."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        os.write(writing, "".join(fresh_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        drawn = pipe.read()
    os.waitpid(child, 0)
    theirs = {drawn[n : n + 32] for n in range(0, len(drawn), 32)}
    ours = {fresh_id() for _ in range(100)}
    assert len(theirs) == 100
    assert not theirs & ours
