"""The payment service: paying orders and refunds. A Flask app of its own, at ``/payment``.

app = create_app()                      # settings from the environment, sandbox provider
app = create_app(settings, provider=YourProvider())   # a real provider plugs in here
"""

from __future__ import annotations

from flask import Flask

from app.api import JsonApi
from app.auth import init_jwt
from app.deny_list import DENY_LIST_HANDLERS, deny_list_check
from app.events import init_events
from app.platform import init_service
from app.settings import Settings
from payment_service import resources
from payment_service.checkout import Checkout
from payment_service.events import refund_cancelled_orders
from payment_service.models import Base
from payment_service.providers import PaymentProvider, SandboxProvider


def create_app(settings: Settings | None = None, provider: PaymentProvider | None = None) -> Flask:
    settings = settings or Settings.from_env()
    provider = provider or SandboxProvider()
    app = Flask(__name__)
    # Payments deserve FULL: WAL with synchronous=FULL survives a power cut.
    platform = init_service(
        app, settings, service="payment", metadata=Base.metadata, synchronous="FULL"
    )
    init_jwt(app, settings, is_revoked=deny_list_check(platform.database))
    init_events(
        app,
        platform,
        handlers={**DENY_LIST_HANDLERS, "order.cancelled": refund_cancelled_orders(provider)},
    )
    checkout = {"checkout": Checkout(platform, provider)}
    api = JsonApi(app)
    api.add_resource(
        resources.PaymentList, "/", endpoint="payments", resource_class_kwargs=checkout
    )
    api.add_resource(
        resources.PaymentList,
        "/pay",
        endpoint="payments_pay",
        methods=["POST"],
        resource_class_kwargs=checkout,
    )
    api.add_resource(resources.PaymentItem, "/<id:payment_id>", endpoint="payment")
    api.add_resource(resources.PaymentItem, "/query/<id:payment_id>", endpoint="payment_query")
    api.add_resource(
        resources.PaymentRefunds,
        "/<id:payment_id>/refund",
        endpoint="refunds",
        resource_class_kwargs=checkout,
    )
    api.add_resource(
        resources.PaymentRefunds,
        "/refund/<id:payment_id>",
        endpoint="refunds_legacy",
        resource_class_kwargs=checkout,
    )
    return app
