"""One WSGI application from the services the settings name.

    application = create_application()      # /user, /order, /payment and the root app
    host = DispatcherMiddleware(host, {"/api": application})   # embeds under any prefix

Each service is resolved by convention (``<name>_service:create_app``) or as written
(``name=module:factory``), so the platform never imports a service package. Its factory
is called with the settings and with the parts its signature names: ``peers``, the
process's service client, for a service that calls others. Then, for each service built
on the platform (``app.kit.service``): its schema migrated outside production, its
``/openapi.json``, its requests counted, its outbox relayed, by a relay that gets
everything it needs when it is made, and its chores repeated in the background.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app import __version__
from app.kit.deny_list import REFRESH_SECONDS
from app.kit.responses import ok
from app.kit.service import ServiceParts, parts_of, readiness
from app.kit.web import init_web
from app.runtime.background import Repeating
from app.runtime.broker import Broker, Consumer
from app.runtime.consumers import start_consumers
from app.runtime.docs_ui import register_docs
from app.runtime.documents import add_document_route
from app.runtime.migrations import prepare_schema
from app.runtime.observability import Metrics
from app.runtime.relay import Relay, Sweeper
from app.runtime.service_client import ServiceClient
from app.settings import ConfigError, ServiceSpec, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class Application(DispatcherMiddleware):
    """The composed WSGI app; ``services`` maps each mounted name to its app."""

    def __init__(
        self,
        root: Flask,
        services: Mapping[str, WSGIApplication],
        peers: ServiceClient,
        metrics: Metrics,
        relays: Mapping[str, Relay],
        background: list[Repeating],
        broker: Broker | None = None,
        consumers: list[Consumer] | None = None,
    ):
        super().__init__(root, {f"/{name}": service for name, service in services.items()})
        self.root = root
        self.services = dict(services)
        self.peers = peers
        self.metrics = metrics
        """Served at ``/metrics``; its own registry, so many applications live in one process."""
        self.relays = dict(relays)
        """Each publishing service's relay, by service name."""
        self.background = background
        """The outbox sweepers, deny-list refreshers and chores this process runs."""
        self.broker = broker
        """RabbitMQ, when ``MICROSHOP_BROKER_URL`` is set: it carries every event."""
        self.consumers = consumers or []
        """This process's consumers of the broker's queues."""

    def dispose(self) -> None:
        """Stop the background threads and close every connection to databases, services
        and the broker."""
        for consumer in self.consumers:
            consumer.stop()
        for thread in self.background:
            thread.stop()
        if self.broker is not None:
            self.broker.close()
        for app in self.services.values():
            service = parts_of(app)
            if service is not None:
                service.database.dispose()
        self.peers.close()


def load_factory(spec: ServiceSpec) -> Callable[..., WSGIApplication]:
    module_name, _, attribute = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"service {spec.name!r}: cannot import {module_name!r} ({error})"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"service {spec.name!r}: {module_name!r} has no {attribute!r}") from None


def build_service(
    factory: Callable[..., WSGIApplication], settings: Settings, peers: ServiceClient
) -> WSGIApplication:
    """``factory(settings)``, plus ``peers`` when its signature names it."""
    if "peers" in inspect.signature(factory).parameters:
        return factory(settings, peers=peers)
    return factory(settings)


def in_app_context(app: Flask, run: Callable[[], None]) -> Callable[[], None]:
    """``run`` as a background thread calls it: inside ``app``'s context, as a request
    would be, so it reaches the service's database (``unit_of_work``)."""

    def run_in_context() -> None:
        with app.app_context():
            run()

    return run_in_context


def create_root_app(services: Mapping[str, WSGIApplication], metrics: Metrics) -> Flask:
    """``/``, ``/healthz``, ``/readyz``, ``/metrics`` and ``/docs`` (Swagger UI for the
    services built on the platform, which serve ``/openapi.json``); other paths get the
    JSON 404."""
    root = Flask(__name__)
    init_web(root)
    register_docs(root, [name for name, app in services.items() if parts_of(app) is not None])

    @root.get("/")
    def index() -> Response:
        prefix = request.script_root
        return ok(
            {
                "services": {name: f"{prefix}/{name}" for name in services},
                "version": __version__,
            }
        )

    @root.get("/healthz")
    def healthz() -> Response:
        return ok({"status": "alive"})

    @root.get("/readyz")
    def readyz() -> Response:
        parts = {name: parts_of(app) for name, app in services.items()}
        return readiness(
            {
                name: "ok" if service is None else service.database.state()
                for name, service in parts.items()
            }
        )

    @root.get("/metrics")
    def metrics_page() -> Response:
        """Prometheus text format: the one response that is not the JSON envelope."""
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    return root


def create_application(
    settings: Settings | None = None,
    *,
    deliver_events: bool = True,
    consume: Collection[str] | None = None,
) -> Application:
    """The composed application; ``deliver_events=False`` (a one-off command such as
    ``microshop migrate``) starts no background thread (outbox sweepers, deny-list
    refreshers, the services' chores, the broker's consumers). With a broker, each
    service that handles events consumes its queue (only those in ``consume``, if given:
    ``microshop worker --service``)."""
    settings = settings or Settings.from_env()
    peers = ServiceClient(settings)
    metrics = Metrics()
    services: dict[str, WSGIApplication] = {}
    for spec in settings.services:
        services[spec.name] = build_service(load_factory(spec), settings, peers)
        peers.mount(spec.name, services[spec.name])
    parts: dict[str, ServiceParts] = {}
    for name, app in services.items():
        service = parts_of(app)
        if service is not None:
            parts[name] = service
            if not settings.is_production:
                prepare_schema(service.database, name, app.import_name)  # type: ignore[attr-defined]
            add_document_route(app, name, __version__)  # type: ignore[arg-type]
        metrics.instrument(app, name)
    subscriptions: dict[str, Collection[str] | None] = dict.fromkeys(peers.urls)
    subscriptions |= {
        name: {model.topic for model in service.handlers}
        for name, service in parts.items()
        if service.outbox is not None
    }
    broker = Broker(settings.broker_url) if settings.broker_url else None
    relays: dict[str, Relay] = {}
    background: list[Repeating] = []
    for name, service in parts.items():
        if service.outbox is not None:
            metrics.watch_outbox(name, service.database, service.outbox)
            relays[name] = Relay(service, peers, subscriptions, metrics, broker)
            relays[name].watch()
            if deliver_events and settings.outbox_sweep_seconds > 0:
                retention = timedelta(days=settings.event_retention_days)
                background.append(Sweeper(relays[name], settings.outbox_sweep_seconds, retention))
        if deliver_events and service.revocations is not None:
            refresh = service.revocations.refresh
            background.append(Repeating(f"deny-list-{name}", refresh, every=REFRESH_SECONDS))
        if deliver_events:
            for chore_name, chore in service.chores.items():
                run = in_app_context(services[name], chore.run)  # type: ignore[arg-type]
                background.append(Repeating(f"{chore_name}-{name}", run, every=chore.every))
    consumers = (
        start_consumers(broker, services, only=consume)
        if broker is not None and deliver_events
        else []
    )
    for thread in background:
        thread.start()
    root = create_root_app(services, metrics)
    metrics.instrument(root, "root")
    return Application(root, services, peers, metrics, relays, background, broker, consumers)
