"""One WSGI application from the services the settings name.

    application = create_application()      # /user, /order, /payment and the root app
    host = DispatcherMiddleware(host, {"/api": application})   # embeds under any prefix

Each service is resolved by convention (``<name>_service:create_app``) or as written
(``name=module:factory``), so the platform never imports a service package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app import __version__
from app.docs_ui import register_docs
from app.observability import Metrics
from app.platform import init_web, platform_of, readiness
from app.responses import ok
from app.service_client import Peers
from app.settings import ConfigError, ServiceSpec, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class Application(DispatcherMiddleware):
    """The composed WSGI app; ``services`` maps each mounted name to its Flask app."""

    def __init__(
        self,
        root: Flask,
        services: Mapping[str, WSGIApplication],
        peers: Peers,
        metrics: Metrics,
    ):
        super().__init__(root, {f"/{name}": service for name, service in services.items()})
        self.root = root
        self.services = dict(services)
        self.peers = peers
        self.metrics = metrics
        """Served at ``/metrics``; its own registry, so many applications live in one process."""

    def dispose(self) -> None:
        """Stop the outbox sweepers and close every connection to databases and services."""
        for service in self.services.values():
            platform = platform_of(service)
            if platform is not None:
                platform.close()
        self.peers.close()


def load_factory(spec: ServiceSpec) -> Callable[[Settings], WSGIApplication]:
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


def create_root_app(services: Mapping[str, WSGIApplication], metrics: Metrics) -> Flask:
    """``/``, ``/healthz``, ``/readyz``, ``/metrics`` and ``/docs`` (Swagger UI for the
    services built on the platform, which serve ``/openapi.json``); other paths get the
    JSON 404."""
    root = Flask(__name__)
    init_web(root)
    register_docs(root, [name for name, app in services.items() if platform_of(app) is not None])

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
        platforms = {name: platform_of(app) for name, app in services.items()}
        return readiness(
            {
                name: "ok" if platform is None else platform.database.state()
                for name, platform in platforms.items()
            }
        )

    @root.get("/metrics")
    def metrics_page() -> Response:
        """Prometheus text format: the one response that is not the JSON envelope."""
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    return root


def create_application(
    settings: Settings | None = None, *, deliver_events: bool = True
) -> Application:
    """The composed application; ``deliver_events=False`` (a one-off command such as
    ``microshop migrate``) starts no outbox sweepers."""
    settings = settings or Settings.from_env()
    services = {spec.name: load_factory(spec)(settings) for spec in settings.services}
    peers = Peers(settings, services)
    metrics = Metrics()
    for name, service in services.items():
        metrics.instrument(service, name)
        platform = platform_of(service)
        if platform is not None:
            platform.connect(peers, start_sweeper=deliver_events)
    root = create_root_app(services, metrics)
    metrics.instrument(root, "root")
    return Application(root, services, peers, metrics)
