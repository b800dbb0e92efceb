"""A team's own services, mounted as ``MICROSHOP_SERVICES=reviews=acme_reviews:create_app``.

One is built on the platform (flask-restful, its own database); one is a bare WSGI app."""

from __future__ import annotations

from flask import Flask, Response
from flask_restful import Resource
from sqlalchemy.orm import DeclarativeBase

from app.kit.api import JsonApi
from app.kit.responses import ok
from app.kit.service import init_service
from app.settings import Settings


class Base(DeclarativeBase):
    """Tables of the reviews service (none yet)."""


class Reviews(Resource):
    def get(self) -> Response:
        """Every review."""
        return ok({"items": []})


class Broken(Resource):
    def get(self) -> Response:
        """Fails the way a bug does."""
        raise RuntimeError("connection string postgresql://admin:hunter2@db")


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    init_service(app, settings, name="reviews", metadata=Base.metadata)
    api = JsonApi(app)
    api.add_resource(Reviews, "/")
    api.add_resource(Broken, "/broken")
    return app


def create_legacy(settings: Settings):
    def legacy(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"legacy says hi"]

    return legacy
