"""A bare Flask app that answers one JSON line: ``waitress-serve bench.peers.flask_hello:app``."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> dict[str, object]:
    """The body of microshop's ``/healthz``, through Flask's routing and JSON."""
    return {"code": 0, "data": {"status": "alive"}, "msg": "ok"}
