"""What every microshop Flask app gets from the platform, wired in one call.

    app = Flask(__name__)
    platform = init_service(app, settings, service="user", metadata=Base.metadata)
    with unit_of_work() as session:         # in a request: this service's database
        ...

``init_web`` is the part without a database (the composition's root app uses it):
the JSON envelope on every error path, 64 KiB bodies, ``X-Request-ID``, paths that
match with or without a trailing slash instead of redirecting to an HTML page, the
``id`` URL converter for row ids, and one JSON log line per request (``app.observability``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, Response, current_app, request
from sqlalchemy import MetaData
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter, Map

from app import __version__
from app.database import MAX_ID, Database
from app.errors import ServiceUnavailable, register_error_handlers
from app.events import Relay, Sweeper
from app.migrations import prepare_schema
from app.observability import Metrics, init_observability
from app.openapi import build_document, operation
from app.request_id import init_request_id
from app.responses import ok
from app.service_client import Peers
from app.settings import Settings

MAX_BODY_BYTES = 64 * 1024
EXTENSION = "microshop"


class IdConverter(IntegerConverter):
    """``/<id:user_id>``: a row id, 1 to 2^31-1, the range of an INTEGER on every database.

    A larger number cannot name a row, so it is a 404 at routing rather than an overflow
    in the driver (a 500)."""

    regex = r"[1-9][0-9]*"  # ASCII and canonical: not "0001", nor any non-ASCII digit

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=MAX_ID)


@dataclass
class Platform:
    """A service's platform parts, kept in ``app.extensions["microshop"]``."""

    service: str
    settings: Settings
    database: Database
    peers: Peers | None = None
    """The other services; set by the composition, which knows them all."""
    relay: Relay | None = None
    """Set by ``init_events`` for a service that publishes or receives events."""
    sweeper: Sweeper | None = None
    metrics: Metrics | None = None
    """Set by the composition (``Metrics.instrument``): counts failed event deliveries."""

    def connect(self, peers: Peers, *, start_sweeper: bool = True) -> None:
        """Learn the other services and, if this service has an outbox, start its sweeper."""
        self.peers = peers
        interval = self.settings.outbox_sweep_seconds
        if self.relay is not None and interval > 0 and start_sweeper:
            self.sweeper = Sweeper(self.relay, interval)
            self.sweeper.start()

    def close(self) -> None:
        """Stop the sweeper after its current delivery, then close the connections."""
        if self.sweeper is not None:
            self.sweeper.stop()
        self.database.dispose()


def init_web(app: Flask) -> None:
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, PROPAGATE_EXCEPTIONS=False)
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.url_map.converters["id"] = IdConverter
    init_observability(app)  # first, so its timing covers the other hooks
    init_request_id(app)
    register_error_handlers(app)


def init_service(
    app: Flask,
    settings: Settings,
    *,
    service: str,
    metadata: MetaData,
    synchronous: str = "NORMAL",
) -> Platform:
    """Wire a service app: web basics, its database, ``/healthz`` and ``/readyz``.

    Outside production the schema is migrated to head at start-up (created, for a service
    without migrations), so ``make run`` needs nothing else; production never changes
    the schema at start-up: that is the operator's ``microshop migrate``.
    """
    init_web(app)
    database = Database.connect(settings.database_url(service), metadata, synchronous=synchronous)
    platform = Platform(service, settings, database)
    app.extensions[EXTENSION] = platform
    if not settings.is_production:
        prepare_schema(database, service, app.import_name)

    @app.get("/healthz")
    @operation(responses={200: None}, auth=False)
    def healthz() -> Response:
        """Alive while the process lives."""
        return ok({"status": "alive", "service": service})

    @app.get("/readyz")
    @operation(responses={200: None}, errors=(503,), auth=False)
    def readyz() -> Response:
        """Ready when the service reaches its database and finds its tables."""
        return readiness({service: database.state()})

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        """This service's OpenAPI 3.1 document, built from its routes and models."""
        document = build_document(
            app, service=service, server=request.script_root, version=__version__
        )
        return current_app.response_class(
            current_app.json.dumps(document), mimetype="application/json"
        )

    return platform


def readiness(states: dict[str, str]) -> Response:
    """200 when every service's database is ``ok``, else 503 naming the ones that are not."""
    failing = [f"{name} ({state})" for name, state in states.items() if state != "ok"]
    if failing:
        raise ServiceUnavailable(f"not ready: {', '.join(failing)}", extra={"services": states})
    return ok({"status": "ready", "services": states})


def platform_of(app: object) -> Platform | None:
    """The platform parts of a mounted app; None for a WSGI app not built on the platform."""
    return getattr(app, "extensions", {}).get(EXTENSION)


def current_platform() -> Platform:
    return current_app.extensions[EXTENSION]


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction on the current service's database."""
    with current_platform().database.unit_of_work() as session:
        yield session
