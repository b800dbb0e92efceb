"""The order service: the order lifecycle. A Flask app of its own, mounted at ``/order``.

app = create_app()                      # settings from the environment
app = create_app(settings)              # or given, as the composition and tests do
"""

from __future__ import annotations

from flask import Flask

from app.kit.api import JsonApi
from app.kit.auth import init_jwt
from app.kit.service import init_service
from app.settings import Settings
from order_service import events, resources
from order_service.models import Base, deny_list, outbox


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    parts = init_service(
        app,
        settings,
        name="order",
        metadata=Base.metadata,
        outbox=outbox,
        handlers=events.handlers(),
        deny_list=deny_list,
    )
    init_jwt(app, settings, is_revoked=parts.revocations.is_revoked)
    api = JsonApi(app)
    api.route(resources.OrderList, "/", legacy={"/create": "POST"})
    api.route(
        resources.OrderItem,
        "/<id:order_id>",
        legacy={"/query/<id:order_id>": "GET", "/cancel/<id:order_id>": "DELETE"},
    )
    api.route(resources.InternalOrder, "/internal/orders/<id:order_id>")
    return app
