"""Metrics and structured logs: what an operator sees of every request.

    metrics = Metrics()                     # one registry per composed application
    metrics.instrument(order_app, "order")  # counted, timed, one JSON line per request
    metrics.watch_outbox("order", database, outbox)     # backlog, failing, dead letters
    body, content_type = metrics.exposition()   # GET /metrics

Requests are counted and timed by service, route template (``/order/<id:order_id>``,
never the raw path; ``unmatched`` for a path no route matches), method and status, so
the number of series stays bounded whatever clients send. Each ``Metrics`` has its own
registry, so any number of applications live in one process.

Logs go through stdlib logging. ``configure_logging`` (run by ``instrument``) gives the
process one JSON formatter on a stderr handler, unless the host has configured logging
already, in which case microshop's records go to the host's handlers. A request's line
holds its method, route, status, duration, request id and, once a token was verified, the
user id: never a body, a token or any header but ``X-Request-ID``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response, current_app, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.kit.auth import verified_claims
from app.kit.service import parts_of
from app.runtime.batched_log import BatchingStreamHandler

if TYPE_CHECKING:
    from app.kit.database import Database
    from app.kit.events import Outbox

ACCESS_LOG = logging.getLogger("microshop.access")
log = logging.getLogger("microshop.observability")
ROOT_SERVICE = "root"
"""The service label of the composition's own app (``/``, ``/healthz``, ``/metrics``, 404s)."""
UNMATCHED = "unmatched"
"""The route label of a request no route matched: 404 scans add one series, not many."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
METRICS = "microshop.metrics"
"""In ``app.extensions``: the ``Metrics`` and service name that ``instrument`` gave it."""
WAITRESS_QUEUE = "waitress.queue"
QUEUE_WARNING_SECONDS = 60
LOG_FIELDS = ("service", "method", "route", "status", "duration_ms", "request_id", "user_id")
_STARTED = "observability_started"
_DONE = "observability_done"
_configure_lock = threading.Lock()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (ISO-8601 UTC), level, logger,
    message, the request fields a record carries, and ``traceback`` for an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if has_request_context():  # a record logged while a request is being answered
            if "request_id" not in entry and g.get("request_id"):
                entry["request_id"] = g.get("request_id")
            if "service" not in entry:
                entry["service"] = _service_of(current_app)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:  # orjson: a tenth of json.dumps's time, for every access line
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # an int beyond 64 bits, which orjson refuses (ijl/orjson#301)
            return json.dumps(entry, default=str)


_second: tuple[int, str] = (0, "")
"""The latest whole second formatted, and its text: a log line's time is formatted once a
second, not once a line."""


def _timestamp(created: float) -> str:
    """ISO-8601 UTC to the millisecond (truncated), ``2026-12-01T10:00:00.123Z``."""
    global _second
    second = int(created)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{int((created - second) * 1000):03d}Z"


class AtMostEvery(logging.Filter):
    """Lets one record through every ``seconds``, and drops the others in between."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.seconds
            return True


def configure_logging() -> None:
    """JSON lines on stderr for this process, once; a host's own logging set-up wins.

    The ``microshop`` loggers log at INFO (the access lines) unless a level was set for them.
    If the root logger has no handler yet, it gets one: stderr, ``JsonFormatter``; so the
    platform's lines, the services' and waitress's all come out as JSON. waitress warns
    "Task queue depth is N" for every request that waits for a thread, which under load
    is nearly every request (a tenth of a request's CPU in a profile of ``/healthz``):
    that one passes at most once a minute. The handler writes its lines in batches
    (``BatchingStreamHandler``), warnings and errors at once. Calling it again, as every
    app built in one process does, changes nothing."""
    with _configure_lock:
        microshop = logging.getLogger("microshop")
        if microshop.level == logging.NOTSET:
            microshop.setLevel(logging.INFO)
        root = logging.getLogger()
        if not root.handlers:
            handler = BatchingStreamHandler()  # sys.stderr
            handler.setFormatter(JsonFormatter())
            root.addHandler(handler)
            logging.getLogger(WAITRESS_QUEUE).addFilter(AtMostEvery(QUEUE_WARNING_SECONDS))


def _observe_requests(app: Flask) -> None:
    """Time every request of ``app``, log it as one line and count it.

    The after-request hook is added after the platform's own (which leave the status as
    it is), so it runs before them (they run in reverse order) and sees the final status."""
    configure_logging()
    app.before_request(_started)
    app.after_request(_finished)
    app.teardown_request(_torn_down)


def _started() -> None:
    g.setdefault(_STARTED, time.perf_counter())


def _finished(response: Response) -> Response:
    _observe(response.status_code)
    return response


def _torn_down(error: BaseException | None) -> None:
    """A request that never reached the after-request hooks still counts, as a 500."""
    if not g.get(_DONE):
        _observe(500)


@dataclass(frozen=True)
class _Instrumented:
    metrics: Metrics
    service: str


def _service_of(app: Flask) -> str:
    """The service label of ``app``: as instrumented, else its own name, else the root's."""
    instrumented: _Instrumented | None = app.extensions.get(METRICS)
    if instrumented is not None:
        return instrumented.service
    service = parts_of(app)
    return service.name if service is not None else ROOT_SERVICE


def _route(service: str) -> str:
    """The route template as a client sees it, with the service's prefix: bounded labels."""
    rule = request.url_rule
    if rule is None:
        return UNMATCHED
    prefix = "" if service == ROOT_SERVICE else f"/{service}"
    return prefix + rule.rule


def _user_id() -> int | None:
    """The user a verified token named in this request; None if no token was verified."""
    claims = verified_claims()
    if claims is None:
        return None
    subject = claims.get("sub")
    if isinstance(subject, str) and subject.isdecimal() and subject.isascii():
        return int(subject)
    return None


def _observe(status: int) -> None:
    if g.get(_DONE):
        return
    g.setdefault(_DONE, True)
    started = g.get(_STARTED)
    seconds = time.perf_counter() - started if started is not None else 0.0
    instrumented: _Instrumented = current_app.extensions[METRICS]
    service = instrumented.service
    route = _route(service)
    method = request.method if request.method in METHODS else OTHER_METHOD
    instrumented.metrics.observe(service, route, method, status, seconds)
    fields: dict[str, Any] = {
        "service": service,
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": g.get("request_id"),
        "user_id": _user_id(),
    }
    level = logging.ERROR if status >= 500 else logging.INFO
    ACCESS_LOG.log(level, "%s %s %s", method, route, status, extra=fields)


class Metrics:
    """The Prometheus metrics of one composed application, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("service", "route", "method", "status")
        self.requests = Counter(
            "microshop_http_requests",
            "HTTP requests answered, by service, route template, method and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "microshop_http_request_duration_seconds",
            "Time to answer an HTTP request, by service, route template, method and status.",
            labels,
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "microshop_outbox_delivery_failures",
            "Failed attempts to deliver an outbox event, by publishing service and subscriber.",
            ("service", "subscriber"),
            registry=self.registry,
        )
        self._series: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        """The request counter's and histogram's children, by their labels."""
        self.outboxes: dict[str, tuple[Database, Outbox]] = {}
        self.registry.register(OutboxBacklog(self.outboxes))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def instrument(self, app: object, service: str) -> None:
        """Count and log ``app``'s requests as ``service``'s.

        A WSGI app that is not a Flask app is mounted as it is, uncounted."""
        if not isinstance(app, Flask) or METRICS in app.extensions:
            return
        app.extensions[METRICS] = _Instrumented(self, service)
        _observe_requests(app)

    def watch_outbox(self, service: str, database: Database, outbox: Outbox) -> None:
        """Report ``service``'s undelivered, failing and dead events (``OutboxBacklog``)."""
        self.outboxes[service] = (database, outbox)

    def observe(self, service: str, route: str, method: str, status: int, seconds: float) -> None:
        series = self._series.get((service, route, method, status))
        if series is None:  # the first request of its kind: labels() checks and locks
            labels = (service, route, method, str(status))
            series = self._series.setdefault(
                (service, route, method, status),
                (self.requests.labels(*labels), self.latency.labels(*labels)),
            )
        requests, latency = series
        requests.inc()
        latency.observe(seconds)

    def delivery_failed(self, service: str, subscriber: str) -> None:
        """One attempt to deliver one of ``service``'s events to ``subscriber`` failed."""
        self.delivery_failures.labels(service, subscriber).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of ``GET /metrics`` (Prometheus text format)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class OutboxBacklog(Collector):
    """Counted at scrape, by service: ``microshop_outbox_backlog`` (events not yet
    delivered), ``microshop_events_failing`` (events the service failed to handle and will
    handle again) and ``microshop_dead_letters`` (events it gave up on).

    A service whose database cannot be reached is left out of the scrape (``/readyz`` names
    it), rather than failing the scrape of every other metric."""

    FAMILIES = {
        "microshop_outbox_backlog": "Events in a service's outbox not yet delivered to every "
        "subscriber.",
        "microshop_events_failing": "Events a service failed to handle and will handle again.",
        "microshop_dead_letters": "Events a service gave up handling: `microshop events` lists "
        "them.",
    }

    def __init__(self, outboxes: dict[str, tuple[Database, Outbox]]):
        self.outboxes = outboxes

    def describe(self) -> Iterator[Metric]:
        for name, help_text in self.FAMILIES.items():
            yield GaugeMetricFamily(name, help_text, labels=["service"])

    def collect(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(name, help_text, labels=["service"])
            for name, help_text in self.FAMILIES.items()
        }
        for service, (database, outbox) in sorted(self.outboxes.items()):
            table, failures = outbox.table, outbox.failures
            queries = {
                "microshop_outbox_backlog": select(func.count())
                .select_from(table)
                .where(table.c.delivered_at.is_(None)),
                "microshop_events_failing": select(func.count())
                .select_from(failures)
                .where(failures.c.dead_at.is_(None)),
                "microshop_dead_letters": select(func.count())
                .select_from(failures)
                .where(failures.c.dead_at.is_not(None)),
            }
            try:
                with database.engine.connect() as connection:
                    counts = {
                        name: connection.scalar(query) or 0 for name, query in queries.items()
                    }
            except Exception as error:  # an unreachable database must not break the scrape
                log.warning("events of %s not counted: %s", service, type(error).__name__)
                continue
            for name, count in counts.items():
                families[name].add_metric([service], count)
        yield from families.values()
