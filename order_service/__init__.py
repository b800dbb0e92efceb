"""The order service: the order lifecycle. A Flask app of its own, mounted at ``/order``.

app = create_app()                      # settings from the environment
app = create_app(settings)              # or given, as the composition and tests do
"""

from __future__ import annotations

from flask import Flask

from app.api import JsonApi
from app.auth import init_jwt
from app.deny_list import DENY_LIST_HANDLERS, deny_list_check
from app.events import init_events
from app.platform import init_service
from app.settings import Settings
from order_service import events, resources
from order_service.models import Base


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    platform = init_service(app, settings, service="order", metadata=Base.metadata)
    init_jwt(app, settings, is_revoked=deny_list_check(platform.database))
    init_events(
        app,
        platform,
        handlers={
            **DENY_LIST_HANDLERS,
            "payment.succeeded": events.on_payment_succeeded,
            "payment.refunded": events.on_payment_refunded,
        },
    )
    api = JsonApi(app)
    api.add_resource(resources.OrderList, "/", endpoint="orders")
    api.add_resource(resources.OrderList, "/create", endpoint="orders_create", methods=["POST"])
    api.add_resource(resources.OrderItem, "/<id:order_id>", endpoint="order")
    api.add_resource(
        resources.OrderItem, "/query/<id:order_id>", endpoint="order_query", methods=["GET"]
    )
    api.add_resource(
        resources.OrderItem, "/cancel/<id:order_id>", endpoint="order_cancel", methods=["DELETE"]
    )
    api.add_resource(resources.InternalOrder, "/internal/orders/<id:order_id>")
    return app
