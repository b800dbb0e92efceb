"""Events between services: the outbox, the relay and its sweeper, the inbox, and the
deny list they feed in the real shop.

Small services built on the platform ("pub" publishes, "sub" and friends subscribe) test
the machinery without the shop; the last tests run the composed application."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from sqlalchemy import String, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from support import (
    DATABASE_BACKENDS,
    ONLY_POSTGRES,
    PASSWORD,
    SECRET,
    access_claims,
    bearer,
    forge,
    free_port,
    make_settings,
    scratch_databases,
    unique,
)
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.test import Client

import user_service
from app.kit.auth import init_jwt, issue_service_token
from app.kit.database import Database, utcnow
from app.kit.events import (
    MAX_RETRY_DELAY_SECONDS,
    Handling,
    Outbox,
    retry_delay,
    retry_failed,
    revive,
)
from app.kit.peers import Reply
from app.kit.service import ServiceParts, init_service, parts_of
from app.kit.topics import Event
from app.runtime.composition import Application, create_application
from app.runtime.observability import Metrics
from app.runtime.relay import MAX_BACKOFF_SECONDS, Relay, Sweeper, backoff
from app.runtime.service_client import ServiceClient
from app.settings import ServiceSpec, Settings

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

TOPIC = "note.added"


class NoteAdded(Event):
    topic = TOPIC
    text: str


class NobodyListens(Event):
    topic = "nobody.listens"
    text: str


EVENTS = {event.topic: event for event in (NoteAdded, NobodyListens)}


class Base(DeclarativeBase):
    """Tables of the test services; each service has them in its own database."""


outbox = Outbox(Base.metadata)


class Note(Base):
    """What a publisher changes, and what a subscriber records when it handles an event."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


@dataclass
class Subscriber:
    """A subscriber's handler, which can be made to fail, and what reached it."""

    failing: bool = False
    poison: set[str] = field(default_factory=set)
    """Texts it fails on, whatever ``failing`` says."""
    calls: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    def on_note(self, event: NoteAdded, handling: Handling) -> None:
        self.calls.append(event.model_dump())
        if self.failing or event.text in self.poison:
            raise RuntimeError("the subscriber's handler failed")
        with handling() as session:
            session.add(Note(text=event.text))


def service_app(name: str, settings: Settings, subscriber: Subscriber | None) -> Flask:
    app = Flask(__name__)
    handlers = {NoteAdded: subscriber.on_note} if subscriber else {}
    parts = init_service(
        app, settings, name=name, metadata=Base.metadata, outbox=outbox, handlers=handlers
    )
    parts.database.create_schema()
    init_jwt(app, settings)
    if subscriber is not None:

        @app.before_request
        def count() -> None:
            subscriber.requests += 1

    return app


class QuietHandler(WSGIRequestHandler):
    def log(self, *args: Any) -> None:
        pass


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """``app`` over HTTP on ``port`` from a thread (one connection at a time, no keep-alive)."""
    server = make_server("127.0.0.1", port, app, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def rows(database: Database, table: str) -> list[dict[str, Any]]:
    t = database.metadata.tables[table]
    with database.unit_of_work() as session:
        order = t.c.id if "id" in t.c else t.c.event_id
        return [dict(row) for row in session.execute(select(t).order_by(order)).mappings()]


def notes(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return list(session.scalars(select(Note.text).order_by(Note.id)))


class Mesh:
    """A publisher "pub", a mounted subscriber "sub", and subscribers by URL (``remote``)."""

    def __init__(
        self,
        url_for: Callable[[str], str],
        folder: Path,
        *,
        sweep: float = 0.0,
        remote: tuple[str, ...] = (),
        connect: bool = True,
        max_attempts: int = 10,
    ):
        self.ports = {name: free_port() for name in remote}
        names = ("pub", "sub", *remote)
        self.settings = make_settings(
            folder,
            {name: url_for(name) for name in names},
            outbox_sweep_seconds=sweep,
            event_max_attempts=max_attempts,
            service_urls={name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()},
        )
        self.subscribers = {name: Subscriber() for name in names[1:]}
        self.apps = {"pub": service_app("pub", self.settings, None)}
        for name, subscriber in self.subscribers.items():
            self.apps[name] = service_app(name, self.settings, subscriber)
        self.peers = ServiceClient(
            self.settings, {name: app for name, app in self.apps.items() if name not in remote}
        )
        self.metrics = Metrics()
        self.subscriptions = {name: None if name in remote else {TOPIC} for name in names}
        self.relays = {
            name: Relay(self.platform(name), self.peers, self.subscriptions, self.metrics)
            for name in self.peers.mounted
        }
        self.sweepers: dict[str, Sweeper] = {}
        self.extra: list[Database] = []
        if connect:
            self.connect()

    def connect(self) -> None:
        """As the composition does: every mounted service's relay delivers after each
        commit, and its sweeper starts."""
        for name, relay in self.relays.items():
            relay.watch()
            if self.settings.outbox_sweep_seconds > 0:
                self.sweepers[name] = Sweeper(
                    relay, self.settings.outbox_sweep_seconds, retention=timedelta(days=7)
                )
                self.sweepers[name].start()

    @contextmanager
    def serving(self, name: str) -> Iterator[str]:
        """A remote subscriber up at its URL, mounted under ``/<name>`` as a process does."""
        root = Flask(__name__)
        with serving(DispatcherMiddleware(root, {f"/{name}": self.apps[name]}), self.ports[name]):
            yield self.settings.service_urls[name]

    def platform(self, name: str) -> ServiceParts:
        return parts_of(self.apps[name])

    @property
    def pub(self) -> ServiceParts:
        return self.platform("pub")

    @property
    def relay(self) -> Relay:
        return self.relays["pub"]

    @property
    def subscriber(self) -> Subscriber:
        return self.subscribers["sub"]

    def publish(self, text: str, topic: str = TOPIC) -> str:
        """A change and its event in one unit of work, as a service's request does."""
        with self.pub.database.unit_of_work() as session:
            session.add(Note(text=text))
            return outbox.publish(session, EVENTS[topic](text=text))

    def publish_unsent(self, count: int) -> list[str]:
        """Committed events whose delivery never started, as after a crash right after
        commit: written on an engine of their own, which no relay watches."""
        database = Database.connect(self.settings.database_url("pub"), Base.metadata)
        try:
            with database.unit_of_work() as session:
                return [outbox.publish(session, NoteAdded(text=f"note {n}")) for n in range(count)]
        finally:
            database.dispose()

    def outbox(self) -> list[dict[str, Any]]:
        return rows(self.pub.database, "outbox")

    def set_outbox(self, **values: Any) -> None:
        outbox = self.pub.database.metadata.tables["outbox"]
        with self.pub.database.unit_of_work() as session:
            session.execute(update(outbox).values(**values))

    def inbox(self, name: str = "sub") -> list[str]:
        return [row["event_id"] for row in rows(self.platform(name).database, "inbox")]

    def notes(self, name: str = "sub") -> list[str]:
        return notes(self.platform(name).database)

    def failures(self, name: str = "sub") -> list[dict[str, Any]]:
        return rows(self.platform(name).database, "event_failures")

    def set_failures(self, name: str = "sub", **values: Any) -> None:
        failures = outbox.failures
        with self.platform(name).database.unit_of_work() as session:
            session.execute(update(failures).values(**values))

    def retry_failed(self, name: str = "sub") -> int:
        parts = self.platform(name)
        return retry_failed(
            parts.database, outbox, parts.handlers, max_attempts=self.settings.event_max_attempts
        )

    def second_relay(self) -> Relay:
        """Another relay on its own engine, as in another process of the same service."""
        database = Database.connect(self.settings.database_url("pub"), Base.metadata)
        self.extra.append(database)
        parts = ServiceParts("pub", self.settings, database, outbox)
        return Relay(parts, self.peers, self.subscriptions, self.metrics)

    def close(self) -> None:
        for sweeper in self.sweepers.values():
            sweeper.stop()
        for app in self.apps.values():
            parts_of(app).database.dispose()
        for database in self.extra:
            database.dispose()
        self.peers.close()


@pytest.fixture
def url_for(backend: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A fresh database per service name."""
    with scratch_databases(backend, tmp_path) as url_of:
        yield url_of


@pytest.fixture
def mesh(url_for: Callable[[str], str], tmp_path: Path) -> Iterator[Callable[..., Mesh]]:
    made: list[Mesh] = []

    def make(**options: Any) -> Mesh:
        made.append(Mesh(url_for, tmp_path, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - start


def assert_pushed_back(row: dict[str, Any], attempts_before: int, start: datetime, end: datetime):
    """``next_attempt_at`` is the failure's time plus ``backoff(attempts before it)``."""
    delay = backoff(attempts_before)
    assert start + delay <= row["next_attempt_at"] <= end + delay


# --- the outbox: an event exists exactly when its change committed ---------------------


def test_an_event_published_in_a_rolled_back_unit_of_work_is_never_recorded_or_sent(mesh):
    shop = mesh()

    def change_that_fails() -> None:
        with shop.pub.database.unit_of_work() as session:
            session.add(Note(text="lost"))
            outbox.publish(session, NoteAdded(text="lost"))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        change_that_fails()

    assert shop.outbox() == []
    assert notes(shop.pub.database) == []
    assert shop.relay.deliver() == 0
    assert shop.subscriber.calls == []
    assert shop.subscriber.requests == 0
    assert shop.inbox() == []


def test_a_committed_event_is_delivered_right_after_commit_and_marked_delivered(mesh):
    shop = mesh()
    start = utcnow()
    with shop.pub.database.unit_of_work() as session:
        session.add(Note(text="kept"))
        event_id = outbox.publish(session, NoteAdded(text="kept"))
        assert shop.subscriber.calls == []  # nothing leaves before the commit
    end = utcnow()

    assert shop.subscriber.calls == [{"text": "kept"}]
    assert shop.notes() == ["kept"]
    assert shop.inbox() == [event_id]
    [row] = shop.outbox()
    assert row["event_id"] == event_id
    assert row["topic"] == TOPIC
    assert json.loads(row["payload"]) == {"text": "kept"}
    assert row["delivered_to"] == "sub"
    assert start <= row["delivered_at"] <= end
    assert row["attempts"] == 0
    assert row["lease_until"] is None
    assert row["last_error"] is None
    assert shop.relay.deliver() == 0  # nothing left to do


def test_an_event_is_delivered_to_every_peer_and_retried_only_for_the_one_that_failed(mesh):
    shop = mesh(remote=("zoo",))  # "zoo" is configured by URL, but not running yet
    event_id = shop.publish("both")

    [row] = shop.outbox()
    assert row["delivered_at"] is None
    assert row["delivered_to"] == "sub"
    assert row["attempts"] == 1
    assert "zoo: zoo service unavailable" in row["last_error"]
    assert shop.subscriber.calls == [{"text": "both"}]

    with shop.serving("zoo"):
        assert shop.relay.deliver([event_id]) == 1
        shop.peers.close()

    [row] = shop.outbox()
    assert row["delivered_to"] == "sub,zoo"
    assert row["delivered_at"] is not None
    assert shop.subscribers["zoo"].calls == [{"text": "both"}]
    assert shop.notes("zoo") == ["both"]
    assert shop.subscriber.requests == 1  # not sent again to the peer that had it


# --- the inbox: at-least-once delivery acts exactly once --------------------------------


def test_an_event_delivered_twice_is_handled_once(mesh):
    shop = mesh()
    event_id = shop.publish("once")
    assert shop.subscriber.calls == [{"text": "once"}]

    # The relay delivers it again, as when it died before recording the acknowledgement.
    shop.set_outbox(delivered_at=None, delivered_to="")
    assert shop.relay.deliver() == 1
    # And a duplicate arrives straight from the peer.
    reply = shop.peers.call(
        "sub",
        "POST",
        "/internal/events",
        caller="pub",
        json_body={"id": event_id, "topic": TOPIC, "payload": {"text": "once"}},
    )

    assert reply == Reply(200, {"outcome": "done"})
    assert shop.subscriber.requests == 3
    assert shop.subscriber.calls == [{"text": "once"}]
    assert shop.notes() == ["once"]
    assert shop.inbox() == [event_id]


def test_concurrent_deliveries_of_one_event_act_once(mesh):
    shop = mesh()
    event = {"id": uuid.uuid4().hex, "topic": TOPIC, "payload": {"text": "racing"}}
    barrier = threading.Barrier(4)
    replies: list[Reply] = []

    def deliver() -> None:
        barrier.wait(timeout=10)
        replies.append(
            shop.peers.call("sub", "POST", "/internal/events", caller="pub", json_body=event)
        )

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert replies == [Reply(200, {"outcome": "done"})] * 4
    assert shop.notes() == ["racing"]  # a handler that lost the race was rolled back
    assert shop.inbox() == [event["id"]]


def test_an_event_of_an_unknown_topic_is_acknowledged_without_running_anything(mesh):
    shop = mesh()
    reply = shop.peers.call(
        "sub",
        "POST",
        "/internal/events",
        caller="pub",
        json_body={"id": uuid.uuid4().hex, "topic": "nobody.listens", "payload": {"text": "x"}},
    )
    assert reply == Reply(200, {"outcome": "done"})

    shop.publish("unheard", topic="nobody.listens")  # through the relay: sent to nobody
    [row] = shop.outbox()
    assert row["delivered_to"] == ""
    assert row["delivered_at"] is not None
    assert shop.subscriber.requests == 1  # only the direct call above
    assert shop.subscriber.calls == []
    assert shop.notes() == []
    assert shop.inbox() == []


# --- retries with back-off ----------------------------------------------------------------


def test_a_failing_handler_keeps_the_event_and_handles_it_again_with_back_off(mesh):
    """The subscriber has the event once it answered: its own failures table holds it,
    and it handles it again, with back-off, until it works."""
    shop = mesh()
    shop.subscriber.failing = True
    start = utcnow()
    event_id = shop.publish("retry")
    end = utcnow()
    [row] = shop.outbox()
    assert (row["delivered_to"], row["attempts"]) == ("sub", 0)
    assert row["delivered_at"] is not None
    [failure] = shop.failures()
    assert (failure["event_id"], failure["attempts"], failure["dead_at"]) == (event_id, 1, None)
    assert failure["last_error"] == "RuntimeError: the subscriber's handler failed"
    assert start + retry_delay(1) <= failure["next_attempt_at"] <= end + retry_delay(1)
    assert shop.retry_failed() == 0  # not due yet: the back-off holds
    assert len(shop.subscriber.calls) == 1

    shop.set_failures(next_attempt_at=utcnow() - timedelta(seconds=1))
    start = utcnow()
    assert shop.retry_failed() == 0  # fails again: the wait doubles
    end = utcnow()
    [failure] = shop.failures()
    assert failure["attempts"] == 2
    assert start + retry_delay(2) <= failure["next_attempt_at"] <= end + retry_delay(2)
    assert retry_delay(20) == timedelta(seconds=MAX_RETRY_DELAY_SECONDS) == timedelta(minutes=5)

    shop.subscriber.failing = False
    shop.set_failures(next_attempt_at=utcnow() - timedelta(seconds=1))
    assert shop.retry_failed() == 1
    assert shop.failures() == []  # what failed before is no longer the state
    assert len(shop.subscriber.calls) == 3  # two failed tries, rolled back, and one that ran
    assert shop.notes() == ["retry"]
    assert shop.inbox() == [event_id]


def test_a_handler_that_keeps_failing_ends_a_dead_letter_while_other_events_flow(mesh):
    shop = mesh(max_attempts=3)
    shop.subscriber.poison = {"poison"}
    poisoned = shop.publish("poison")
    for _ in range(2):
        shop.set_failures(next_attempt_at=utcnow() - timedelta(seconds=1))
        shop.retry_failed()
    shop.publish("fine")
    [failure] = shop.failures()
    assert (failure["event_id"], failure["attempts"]) == (poisoned, 3)
    assert failure["dead_at"] is not None
    assert failure["next_attempt_at"] is None
    assert shop.notes() == ["fine"]
    shop.set_failures(next_attempt_at=utcnow() - timedelta(seconds=1))
    assert shop.retry_failed() == 0  # a dead letter waits for an operator
    assert len(shop.subscriber.calls) == 4

    assert revive(shop.platform("sub").database, outbox, poisoned)  # put back too soon
    assert not revive(shop.platform("sub").database, outbox, poisoned)  # only a dead one
    assert shop.retry_failed() == 0
    [failure] = shop.failures()
    assert (failure["attempts"], failure["dead_at"]) == (1, None)  # counted from none again

    shop.subscriber.poison = set()  # fixed
    shop.set_failures(next_attempt_at=utcnow() - timedelta(seconds=1))
    assert shop.retry_failed() == 1
    assert shop.notes() == ["poison", "fine"] or shop.notes() == ["fine", "poison"]
    assert shop.failures() == []


def test_a_payload_that_does_not_validate_is_a_dead_letter_at_once(mesh):
    shop = mesh()
    event_id = uuid.uuid4().hex
    reply = shop.peers.call(
        "sub",
        "POST",
        "/internal/events",
        caller="pub",
        json_body={"id": event_id, "topic": TOPIC, "payload": {"text": 5}},
    )
    assert reply == Reply(200, {"outcome": "dead"})
    [failure] = shop.failures()
    assert (failure["event_id"], failure["attempts"]) == (event_id, 1)
    assert failure["dead_at"] is not None
    assert failure["last_error"].startswith("the payload is not a note.added of revision 1")
    assert shop.subscriber.calls == []
    other_revision = {"id": uuid.uuid4().hex, "topic": TOPIC, "revision": 2, "payload": {}}
    reply = shop.peers.call(
        "sub", "POST", "/internal/events", caller="pub", json_body=other_revision
    )
    assert reply == Reply(200, {"outcome": "dead"})


def test_the_sweeper_prunes_sent_events_and_handled_ids_past_the_retention(mesh):
    shop = mesh()
    old, recent = shop.publish("old"), shop.publish("recent")
    unsent = shop.publish_unsent(1)[0]
    long_ago = utcnow() - timedelta(days=8)
    table = shop.pub.database.metadata.tables["outbox"]
    with shop.pub.database.unit_of_work() as session:
        session.execute(update(table).where(table.c.event_id == old).values(delivered_at=long_ago))
    sub = shop.platform("sub").database
    inbox = sub.metadata.tables["inbox"]
    with sub.unit_of_work() as session:
        session.execute(update(inbox).where(inbox.c.event_id == old).values(received_at=long_ago))

    assert shop.relay.prune(timedelta(days=7)) == 1  # the publisher's old sent event
    assert [row["event_id"] for row in shop.outbox()] == [recent, unsent]  # unsent stays
    assert shop.relays["sub"].prune(timedelta(days=7)) == 1  # the subscriber's inbox id
    assert shop.inbox() == [recent]


def test_an_unreachable_subscriber_gets_the_event_once_it_is_back(mesh):
    shop = mesh(remote=("far",))  # configured by URL, but not running yet
    start = utcnow()
    event_id = shop.publish("later")
    end = utcnow()

    [row] = shop.outbox()
    assert row["delivered_at"] is None
    assert row["delivered_to"] == "sub"
    assert row["attempts"] == 1
    assert "far: far service unavailable" in row["last_error"]
    assert_pushed_back(row, 0, start, end)
    assert backoff(20) == timedelta(seconds=MAX_BACKOFF_SECONDS)  # far in, the wait is capped

    with shop.serving("far"):
        assert shop.relay.deliver() == 0  # not due yet
        shop.set_outbox(next_attempt_at=utcnow() - timedelta(seconds=1))
        assert shop.relay.deliver() == 1
        shop.peers.close()

    [row] = shop.outbox()
    assert row["delivered_at"] is not None
    assert row["delivered_to"] == "far,sub"
    assert shop.subscribers["far"].calls == [{"text": "later"}]
    assert shop.notes("far") == ["later"]
    assert shop.inbox("far") == [event_id]


# --- the sweeper ------------------------------------------------------------------------


def test_the_sweeper_delivers_an_event_left_pending_by_a_crash_soon_after_start(mesh):
    shop = mesh(sweep=0.1, connect=False)
    [event_id] = shop.publish_unsent(1)
    assert shop.outbox()[0]["delivered_at"] is None

    shop.connect()  # the process starts again: the sweeper starts with it
    sweeper = shop.sweepers["pub"]
    waited = wait_for(lambda: shop.outbox()[0]["delivered_at"] is not None, timeout=10)
    assert waited < 5
    assert shop.subscriber.calls == [{"text": "note 0"}]
    assert shop.inbox() == [event_id]

    sweeper.stop()
    assert not sweeper._thread.is_alive()


def test_the_subscribers_sweeper_handles_a_failed_event_again_after_its_back_off(mesh):
    shop = mesh(sweep=0.1)
    shop.subscriber.failing = True
    event_id = shop.publish("swept")
    [failed] = shop.failures()
    shop.subscriber.failing = False

    wait_for(lambda: shop.inbox() == [event_id], timeout=15)

    assert utcnow() >= failed["next_attempt_at"]  # not before the back-off ran out
    assert shop.notes() == ["swept"]
    assert shop.failures() == []
    shop.sweepers["sub"].stop()
    assert not shop.sweepers["sub"]._thread.is_alive()


def test_stopping_a_sweeper_ends_its_thread_without_waiting_out_the_interval(mesh):
    shop = mesh()
    sweeper = Sweeper(shop.relay, interval=60, retention=timedelta(days=7))
    sweeper.start()
    wait_for(lambda: sweeper._thread.is_alive())
    start = time.monotonic()
    sweeper.stop()
    assert time.monotonic() - start < 5
    assert not sweeper._thread.is_alive()


# --- claims and leases --------------------------------------------------------------------


def test_a_claimed_event_is_not_claimed_again_until_its_lease_runs_out(mesh):
    shop = mesh()
    ids = shop.publish_unsent(3)
    first = [row["event_id"] for row in shop.relay._claim(None)]
    assert first == ids
    assert all(row["lease_until"] is not None for row in shop.outbox())
    assert shop.relay._claim(None) == []
    assert shop.second_relay()._claim(None) == []

    shop.set_outbox(lease_until=utcnow() - timedelta(seconds=1))  # its relay died mid-way
    assert [row["event_id"] for row in shop.relay._claim(None)] == ids


def test_two_relays_claiming_at_once_get_disjoint_events(mesh):
    shop = mesh()
    ids = shop.publish_unsent(120)
    relays = {"a": shop.relay, "b": shop.second_relay()}
    barrier = threading.Barrier(len(relays))
    claimed: dict[str, list[str]] = {}

    def claim(name: str) -> None:
        barrier.wait(timeout=10)
        claimed[name] = [row["event_id"] for row in relays[name]._claim(None)]

    threads = [threading.Thread(target=claim, args=(name,)) for name in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    a, b = claimed["a"], claimed["b"]
    assert len(a) == len(set(a)) == 50  # a full batch each
    assert len(b) == len(set(b)) == 50
    assert not set(a) & set(b)
    assert set(a) | set(b) <= set(ids)


@pytest.mark.parametrize("backend", [ONLY_POSTGRES])
def test_two_relays_on_postgresql_race_many_times_without_sharing_an_event(mesh, backend):
    shop = mesh()
    ids = shop.publish_unsent(200)
    relays = [shop.relay, shop.second_relay()]
    claimed: list[list[str]] = [[], []]

    def run(index: int, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=10)
        claimed[index].extend(row["event_id"] for row in relays[index]._claim(None))

    for _ in range(2):  # 2 rounds x 2 relays x 50: every event claimed once
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(i, barrier)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == set(ids)


@pytest.mark.parametrize("backend", [ONLY_POSTGRES])
def test_a_relay_on_postgresql_skips_events_another_holds_locked(mesh, backend):
    shop = mesh()
    ids = shop.publish_unsent(10)
    outbox = shop.pub.database.metadata.tables["outbox"]
    other = shop.second_relay().service.database
    claimed: list[str] = []

    def claim() -> None:
        claimed.extend(row["event_id"] for row in shop.relay._claim(None))

    with other.engine.connect() as connection, connection.begin():
        held = connection.execute(
            select(outbox.c.event_id).order_by(outbox.c.id).limit(4).with_for_update()
        ).scalars()
        assert list(held) == ids[:4]
        thread = threading.Thread(target=claim)
        thread.start()
        thread.join(timeout=10)
        finished = not thread.is_alive()
    thread.join(timeout=30)
    assert finished, "the claim waited for another transaction's locks instead of skipping"
    assert claimed == ids[4:]
    assert [row["event_id"] for row in shop.relay._claim(None)] == ids[:4]


# --- the receiver takes service tokens only -------------------------------------------


def test_the_event_receiver_refuses_user_tokens_and_no_token(mesh):
    shop = mesh()
    client = shop.apps["sub"].test_client()
    event = {"id": uuid.uuid4().hex, "topic": TOPIC, "payload": {"text": "sneaky"}}
    now = int(time.time())
    probes = {
        "missing_token": {},
        "invalid_token": bearer(forge(access_claims(1))),
    }
    for slug, headers in probes.items():
        reply = client.post("/internal/events", json=event, headers=headers)
        assert reply.status_code == 401, reply.get_data(as_text=True)
        assert reply.get_json()["data"]["error"] == slug
    for token, slug in [
        (issue_service_token("w" * 40, "pub"), "invalid_token"),
        (forge({"sub": "pub", "type": "service", "iat": now, "exp": now + 60}), "invalid_token"),
        (
            forge(
                {
                    "sub": "pub",
                    "aud": "microshop-internal",
                    "type": "service",
                    "iat": now - 120,
                    "exp": now - 60,
                }
            ),
            "token_expired",
        ),
    ]:
        reply = client.post("/internal/events", json=event, headers=bearer(token))
        assert reply.status_code == 401
        assert reply.get_json()["data"]["error"] == slug
    assert shop.subscriber.calls == []

    reply = client.post(
        "/internal/events", json=event, headers=bearer(issue_service_token(SECRET, "pub"))
    )
    assert reply.status_code == 200
    assert reply.get_json()["data"] == {"outcome": "done"}
    assert shop.subscriber.calls == [{"text": "sneaky"}]


# --- the real shop: logout and password changes reach every service ------------------


def sign_up(client: Client) -> tuple[str, str]:
    """A new account's username and an access token."""
    username = unique()
    reply = client.post(
        "/user/register",
        json={"username": username, "password": PASSWORD, "email": f"{username}@example.com"},
    )
    assert reply.status_code == 201, reply.get_data(as_text=True)
    return username, log_in(client, username, PASSWORD)


def log_in(client: Client, username: str, password: str) -> str:
    reply = client.post("/user/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["data"]["access_token"]


def assert_refused(client: Client, path: str, token: str) -> None:
    reply = client.get(path, headers=bearer(token))
    assert reply.status_code == 401, (path, reply.get_data(as_text=True))
    assert reply.get_json()["data"]["error"] == "token_revoked", path


def assert_accepted(client: Client, path: str, token: str) -> None:
    reply = client.get(path, headers=bearer(token))
    assert reply.status_code == 200, (path, reply.get_data(as_text=True))


def user_outbox(application: Application, topic: str) -> list[dict[str, Any]]:
    database = parts_of(application.services["user"]).database
    return [row for row in rows(database, "outbox") if row["topic"] == topic]


def rows_of(database: Database, table: str) -> list[dict[str, Any]]:
    t = database.metadata.tables[table]
    with database.unit_of_work() as session:
        return [dict(row) for row in session.execute(select(t)).mappings()]


def test_logout_is_refused_by_the_order_and_payment_services_at_once(application):
    client = Client(application)
    _username, token = sign_up(client)
    _other, bystander = sign_up(client)
    for path in ("/user/me", "/order/", "/payment/"):
        assert_accepted(client, path, token)

    reply = client.post("/user/logout", headers=bearer(token))
    assert reply.status_code == 200, reply.get_data(as_text=True)

    for path in ("/user/me", "/order/", "/payment/"):
        assert_refused(client, path, token)
        assert_accepted(client, path, bystander)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    for name in ("order", "payment"):
        database = parts_of(application.services[name]).database
        assert [row["jti"] for row in rows_of(database, "denied_tokens")] == [jti]
    [event] = user_outbox(application, "token.revoked")
    assert event["delivered_to"] == "order,payment"
    assert event["delivered_at"] is not None


def test_a_password_change_retires_older_tokens_in_the_order_and_payment_services(application):
    client = Client(application)
    username, old = sign_up(client)
    for path in ("/order/", "/payment/"):
        assert_accepted(client, path, old)

    reply = client.post(
        "/user/password",
        json={"old_password": PASSWORD, "new_password": "a-brand-new-passphrase"},
        headers=bearer(old),
    )
    assert reply.status_code == 200, reply.get_data(as_text=True)

    for path in ("/user/me", "/order/", "/payment/"):
        assert_refused(client, path, old)
    new = log_in(client, username, "a-brand-new-passphrase")
    for path in ("/user/me", "/order/", "/payment/"):
        assert_accepted(client, path, new)
    [event] = user_outbox(application, "user.tokens_invalidated")
    assert event["delivered_to"] == "order,payment"
    assert event["delivered_at"] is not None


@pytest.mark.parametrize("service", ["user", "order", "payment"])
def test_the_shop_services_take_events_from_services_only(application, service: str):
    client = Client(application)
    _username, token = sign_up(client)
    event = {"id": uuid.uuid4().hex, "topic": "token.revoked", "payload": {}}
    for headers, slug in [({}, "missing_token"), (bearer(token), "invalid_token")]:
        reply = client.post(f"/{service}/internal/events", json=event, headers=headers)
        assert reply.status_code == 401, reply.get_data(as_text=True)
        assert reply.get_json()["data"]["error"] == slug
    unknown = {"id": uuid.uuid4().hex, "topic": "nobody.listens", "payload": {}}
    reply = client.post(
        f"/{service}/internal/events",
        json=unknown,
        headers=bearer(issue_service_token(SECRET, "test")),
    )
    assert reply.status_code == 200
    assert reply.get_json()["data"] == {"outcome": "done"}


def test_an_event_is_done_when_every_subscriber_has_it_even_beside_services_without_an_inbox(
    url_for, tmp_path: Path
):
    """A team's own service (no events) and a bare WSGI app mounted beside the shop: they
    subscribe to nothing, so they must not keep the shop's events pending for ever."""
    settings = make_settings(
        tmp_path,
        {name: url_for(name) for name in ("user", "order", "reviews")},
        services=tuple(
            ServiceSpec.parse(spec)
            for spec in (
                "user",
                "order",
                "reviews=acme_reviews:create_app",
                "legacy=acme_reviews:create_legacy",
            )
        ),
        outbox_sweep_seconds=0,
    )
    application = create_application(settings)
    try:
        for name in ("user", "order", "reviews"):
            parts_of(application.services[name]).database.create_schema()
        client = Client(application)
        _username, token = sign_up(client)
        assert client.post("/user/logout", headers=bearer(token)).status_code == 200
        assert_refused(client, "/order/", token)

        [event] = user_outbox(application, "token.revoked")
        assert "order" in event["delivered_to"].split(",")
        assert event["last_error"] is None, event["last_error"]
        assert event["delivered_at"] is not None
    finally:
        application.dispose()


def test_an_event_id_longer_than_the_inbox_keeps_is_refused_with_422(application: Application):
    token = issue_service_token(SECRET, "user")
    reply = Client(application).post(
        "/order/internal/events",
        json={"id": "x" * 33, "topic": "token.revoked", "payload": {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 422
    assert set(reply.get_json()["data"]["fields"]) == {"id"}


def test_a_service_not_yet_connected_to_its_peers_keeps_its_events(settings: Settings):
    """Standalone (no composition), a service cannot know its subscribers: it waits."""
    app = user_service.create_app(settings)
    parts = parts_of(app)
    parts.database.create_schema()
    try:
        client = app.test_client()
        body = {"username": "solo", "password": PASSWORD, "email": "solo@example.com"}
        assert client.post("/register", json=body).status_code == 201
        login = client.post("/login", json={"username": "solo", "password": PASSWORD})
        token = login.get_json()["data"]["token"]
        assert client.post("/logout", headers=bearer(token)).status_code == 200
        [event] = rows(parts.database, "outbox")
        assert (event["topic"], event["delivered_at"], event["delivered_to"]) == (
            "token.revoked",
            None,
            "",
        )
    finally:
        parts.database.dispose()
