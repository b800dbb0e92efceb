"""The payment service: paying orders and refunds. A Flask app of its own, at ``/payment``.

app = create_app()                      # settings from the environment, sandbox provider
app = create_app(settings, peers)       # as the composition does: it reads orders
app = create_app(settings, peers, provider=YourProvider())   # a real provider
"""

from __future__ import annotations

from flask import Flask

from app.kit.api import JsonApi
from app.kit.auth import init_jwt
from app.kit.peers import NoPeers, Peers
from app.kit.service import Chore, init_service
from app.settings import Settings
from payment_service import events, resources
from payment_service.checkout import Checkout
from payment_service.models import Base, deny_list, outbox
from payment_service.providers import PaymentProvider, SandboxProvider

RECONCILE_SECONDS = 5.0
"""How often a process looks for payments and refunds a dead process left half done."""


def create_app(
    settings: Settings | None = None,
    peers: Peers | None = None,
    provider: PaymentProvider | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    checkout = Checkout(peers or NoPeers(), provider or SandboxProvider())
    app = Flask(__name__)
    parts = init_service(
        app,
        settings,
        name="payment",
        metadata=Base.metadata,
        outbox=outbox,
        handlers=events.handlers(checkout),
        deny_list=deny_list,
        chores={"reconcile": Chore(checkout.reconcile, every=RECONCILE_SECONDS)},
        synchronous="FULL",  # payments survive a power cut
    )
    init_jwt(app, settings, is_revoked=parts.revocations.is_revoked)
    api = JsonApi(app)
    collaborators = {"resource_class_kwargs": {"checkout": checkout}}
    api.route(resources.PaymentList, "/", legacy={"/pay": "POST"}, **collaborators)
    api.route(resources.PaymentItem, "/<id:payment_id>", legacy={"/query/<id:payment_id>": "GET"})
    api.route(
        resources.PaymentRefunds,
        "/<id:payment_id>/refund",
        legacy={"/refund/<id:payment_id>": "POST"},
        **collaborators,
    )
    return app
