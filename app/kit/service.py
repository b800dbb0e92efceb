"""A service's parts, built once by its ``create_app`` and kept on its Flask app.

    app = Flask(__name__)
    parts = init_service(app, settings, name="order", metadata=Base.metadata,
                         outbox=outbox, handlers=events.handlers(), deny_list=deny_list)
    init_jwt(app, settings, is_revoked=parts.revocations.is_revoked)

    with unit_of_work() as session:               # in a request: this service's database
        ...
    with unit_of_work(readonly=True) as session:  # a read, which never waits for another
        ...

``init_service`` gives the app the web basics (``app.kit.web``), its own database (a
request that finds it without its schema, or out of reach, answers 503 naming it, and one
that loses a lock conflict 503 with ``Retry-After``),
``/healthz``, ``/readyz`` and, with an outbox, its inbox (``POST /internal/events``). The parts
are complete when ``init_service`` returns; the runtime only reads them
(``parts_of(app)``) to migrate the schema, deliver the outbox, document the API and
report readiness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, g, request
from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from app.kit.database import Database, DatabaseBusy, DatabaseNotReady
from app.kit.deny_list import DenyList, Revocations
from app.kit.errors import ServiceUnavailable
from app.kit.events import Handlers, Outbox, init_inbox
from app.kit.openapi import operation
from app.kit.responses import error_response, ok
from app.kit.web import init_web
from app.settings import Settings

EXTENSION = "microshop"
BUSY_RETRY_AFTER_SECONDS = 1
"""What ``Retry-After`` tells a client whose write lost a lock conflict: the lock's holder
is usually done well within a second."""
log = logging.getLogger("microshop.database")


@dataclass(frozen=True)
class Chore:
    """``run`` every ``every`` seconds, in the service's app context, e.g. settling what a
    process that died left half done. A failure is logged and the next round runs."""

    run: Callable[[], None]
    every: float


@dataclass(frozen=True)
class ServiceParts:
    """A service's parts, in ``app.extensions["microshop"]``."""

    name: str
    settings: Settings
    database: Database
    outbox: Outbox | None = None
    """Its outbox and inbox: where it publishes events and takes them; None: neither."""
    handlers: Handlers = field(default_factory=dict)
    """What it does on each topic it handles, by the topic's event model."""
    revocations: Revocations | None = None
    """Its deny list in memory, which the runtime refreshes; None: it keeps none."""
    chores: Mapping[str, Chore] = field(default_factory=dict)
    """Work the runtime repeats in the background for it, by name."""


def init_service(
    app: Flask,
    settings: Settings,
    *,
    name: str,
    metadata: MetaData,
    outbox: Outbox | None = None,
    handlers: Handlers | None = None,
    deny_list: DenyList | None = None,
    chores: Mapping[str, Chore] | None = None,
    synchronous: str = "NORMAL",
) -> ServiceParts:
    """Wire a service app: web basics, its database, ``/healthz``, ``/readyz`` and its inbox.

    ``synchronous`` is SQLite's durability for its database (``FULL`` survives a power cut).
    """
    if handlers and outbox is None:
        raise ValueError(f"{name}: a service that handles events needs an Outbox (its inbox)")
    init_web(app)
    app.register_error_handler(DatabaseNotReady, _database_not_ready)
    app.register_error_handler(DatabaseBusy, _database_busy)
    database = Database.connect(
        settings.database_url(name), metadata, name=name, synchronous=synchronous
    )
    revocations = deny_list.revocations(database) if deny_list is not None else None
    parts = ServiceParts(
        name, settings, database, outbox, dict(handlers or {}), revocations, dict(chores or {})
    )
    app.extensions[EXTENSION] = parts
    if outbox is not None:  # a peer by URL cannot know what it handles: it takes every event
        init_inbox(app, database, outbox, parts.handlers, max_attempts=settings.event_max_attempts)

    @app.get("/healthz")
    @operation(responses={200: None}, auth=False)
    def healthz() -> Response:
        """Alive while the process lives."""
        return ok({"status": "alive", "service": name})

    @app.get("/readyz")
    @operation(responses={200: None}, errors=(503,), auth=False)
    def readyz() -> Response:
        """Ready when the service reaches its database and finds its tables."""
        return readiness({name: database.state()})

    return parts


def readiness(states: dict[str, str]) -> Response:
    """200 when every service's database is ``ok``, else 503 naming the ones that are not."""
    failing = [f"{name} ({state})" for name, state in states.items() if state != "ok"]
    if failing:
        raise ServiceUnavailable(f"not ready: {', '.join(failing)}", extra={"services": states})
    return ok({"status": "ready", "services": states})


def _database_not_ready(error: DatabaseNotReady) -> Response:
    """A request that needs a database without its schema (or out of reach): 503 naming it."""
    return error_response(
        503, ServiceUnavailable.slug, error.message, services={error.service: error.state}
    )


def _database_busy(error: DatabaseBusy) -> Response:
    """A request whose unit of work lost a lock conflict, rolled back: 503 to send again."""
    request_id = g.get("request_id", "-")
    log.warning(  # expected under contention: one line, no traceback
        "%s %s%s (request id %s): %s (%s)",
        request.method,
        request.script_root,
        request.path,
        request_id,
        error.message,
        error.conflict,
        extra={"request_id": request_id},
    )
    response = error_response(
        503, ServiceUnavailable.slug, error.message, services={error.service: "busy"}
    )
    response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response


def parts_of(app: object) -> ServiceParts | None:
    """The parts of a mounted app; None for a WSGI app not built on the platform."""
    return getattr(app, "extensions", {}).get(EXTENSION)


@contextmanager
def unit_of_work(*, readonly: bool = False) -> Iterator[Session]:
    """One transaction on the current service's database (see ``Database.unit_of_work``)."""
    parts: ServiceParts = current_app.extensions[EXTENSION]
    with parts.database.unit_of_work(readonly=readonly) as session:
        yield session
