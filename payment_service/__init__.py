"""The payment service, mounted at ``/payment``. A Flask app of its own.

    app = create_app()                      # settings from the environment
    app = create_app(settings)              # or given, as the composition and tests do

Until its own routes land it answers ``/healthz``, ``/readyz`` and the JSON 404.
"""

from __future__ import annotations

from flask import Flask

from app.platform import init_service
from app.settings import Settings
from payment_service.models import Base


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    init_service(app, settings, service="payment", metadata=Base.metadata, synchronous="FULL")
    return app
