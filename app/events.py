"""Events between services that are never lost: an outbox, a relay, an inbox.

    add_event_tables(Base.metadata)                     # models.py: outbox + inbox tables
    publish(session, "order.cancelled", {"order_id": 7})    # in the caller's transaction
    init_events(app, platform, {"payment.succeeded": on_paid})  # handlers: (session, payload)

``publish`` writes the event in the same transaction as the change it reports. Once that
transaction commits, the relay delivers the event to every other service this process
knows (mounted or by URL) at ``POST /<service>/internal/events``; a service that does not
handle a topic acknowledges it and moves on. Delivery retries with back-off until each
subscriber acknowledges: right after the commit, then from a sweeper thread that runs at
start-up and every ``MICROSHOP_OUTBOX_SWEEP_SECONDS``, so a crash loses nothing. A
mounted app without an inbox (``init_events``) takes no events; every service reached by
URL is expected to have one.

A relay claims rows with a short lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several processes share the work) and delivers outside any transaction. Receivers record
each event id in their inbox in the handler's own transaction, so at-least-once delivery
acts exactly once.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from flask import Flask, Response
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import service_required
from app.database import UTCDateTime, utcnow
from app.errors import ServiceUnavailable
from app.responses import ok
from app.validation import parse

if TYPE_CHECKING:
    from app.platform import Platform

Handler = Callable[[Session, dict[str, Any]], None]
INBOX = "microshop.inbox"
"""Marks, in ``app.extensions``, a mounted app that takes events (has the inbox route)."""
LEASE = timedelta(seconds=10)
"""Longer than a delivery usually takes (2 s connect + 5 s read at worst); if one ever
outlasts it, another relay may deliver the event too, and the inbox absorbs the twin."""
MAX_BACKOFF_SECONDS = 300
BATCH = 50
log = logging.getLogger("microshop.events")


def add_event_tables(metadata: MetaData) -> None:
    """The outbox and inbox, in the service's own database."""
    Table(
        "outbox",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("event_id", String(32), nullable=False, unique=True),
        Column("topic", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("delivered_to", Text, nullable=False, default=""),
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", UTCDateTime, nullable=False, index=True),
        Column("lease_until", UTCDateTime),
        Column("delivered_at", UTCDateTime, index=True),
        Column("last_error", Text),
    )
    Table(
        "inbox",
        metadata,
        Column("event_id", String(32), primary_key=True),
        Column("topic", String(64), nullable=False),
        Column("received_at", UTCDateTime, nullable=False),
    )


def publish(session: Session, topic: str, payload: dict[str, Any]) -> str:
    """Record an event in the caller's transaction; it is delivered once that commits."""
    outbox: Table = session.info["metadata"].tables["outbox"]
    event_id = uuid.uuid4().hex
    now = utcnow()
    session.execute(
        outbox.insert().values(
            event_id=event_id,
            topic=topic,
            payload=json.dumps(payload),
            created_at=now,
            delivered_to="",
            attempts=0,
            next_attempt_at=now,
        )
    )
    session.info.setdefault("published", []).append(event_id)
    return event_id


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2**attempts, MAX_BACKOFF_SECONDS))


class Relay:
    """Delivers a service's outbox to its peers; safe to run in several threads and processes."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.outbox: Table = platform.database.metadata.tables["outbox"]

    def subscribers(self) -> set[str]:
        """Every other service that takes events: mounted ones with an inbox, all by URL."""
        peers = self.platform.peers
        mounted = {
            name for name, app in peers.mounted.items() if getattr(app, "extensions", {}).get(INBOX)
        }
        return (mounted | set(peers.urls)) - {self.platform.service}

    def deliver(self, event_ids: Iterable[str] | None = None) -> int:
        """Deliver due events (only ``event_ids`` if given); returns how many are done.

        Until the composition has introduced the peers, nothing is delivered (nor lost)."""
        if self.platform.peers is None:
            return 0
        done = 0
        for row in self._claim(list(event_ids) if event_ids is not None else None):
            done += self._deliver_row(row)
        return done

    def _claim(self, event_ids: list[str] | None) -> list[Mapping[str, Any]]:
        now = utcnow()
        query = (
            select(self.outbox)
            .where(self.outbox.c.delivered_at.is_(None))
            .where(or_(self.outbox.c.lease_until.is_(None), self.outbox.c.lease_until < now))
            .order_by(self.outbox.c.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        if event_ids is not None:
            query = query.where(self.outbox.c.event_id.in_(event_ids))
        else:
            query = query.where(self.outbox.c.next_attempt_at <= now)
        with self.platform.database.unit_of_work() as session:
            rows = [dict(row) for row in session.execute(query).mappings()]
            if rows:
                session.execute(
                    update(self.outbox)
                    .where(self.outbox.c.id.in_([row["id"] for row in rows]))
                    .values(lease_until=now + LEASE)
                )
        return rows

    def _deliver_row(self, row: Mapping[str, Any]) -> int:
        delivered = {name for name in row["delivered_to"].split(",") if name}
        errors = []
        for subscriber in sorted(self.subscribers() - delivered):
            try:
                reply = self.platform.peers.call(
                    subscriber,
                    "POST",
                    "/internal/events",
                    caller=self.platform.service,
                    json_body={
                        "id": row["event_id"],
                        "topic": row["topic"],
                        "payload": json.loads(row["payload"]),
                    },
                )
            except ServiceUnavailable as error:
                errors.append(f"{subscriber}: {error.message}")
                self._failed(subscriber)
                continue
            if reply.status == 200:
                delivered.add(subscriber)
            else:
                errors.append(f"{subscriber}: answered {reply.status}")
                self._failed(subscriber)
        finished = not errors
        now = utcnow()
        values: dict[str, Any] = {"delivered_to": ",".join(sorted(delivered)), "lease_until": None}
        if finished:
            values.update(delivered_at=now, last_error=None)
        else:
            values.update(
                attempts=row["attempts"] + 1,
                next_attempt_at=now + backoff(row["attempts"]),
                last_error="; ".join(errors)[:1000],
            )
            log.warning("event %s (%s) not delivered: %s", row["event_id"], row["topic"], errors)
        with self.platform.database.unit_of_work() as session:
            session.execute(update(self.outbox).where(self.outbox.c.id == row["id"]).values(values))
        return int(finished)

    def _failed(self, subscriber: str) -> None:
        """Count a failed delivery, when the composition gave the platform its metrics."""
        if self.platform.metrics is not None:
            self.platform.metrics.delivery_failed(self.platform.service, subscriber)

    def deliver_after_commit(self, event_ids: list[str]) -> None:
        """Right after a commit: try once now; whatever fails is the sweeper's."""
        try:
            self.deliver(event_ids)
        except Exception:  # the sweeper retries; the request that published has succeeded
            log.exception("delivery after commit failed; the sweeper will retry")


class Sweeper:
    """A daemon thread that delivers due events at start-up and every ``interval`` seconds."""

    def __init__(self, relay: Relay, interval: float):
        self.relay = relay
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"outbox-{relay.platform.service}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.relay.deliver()
            except Exception:  # a database blip must not end the sweeper
                log.exception("outbox sweep failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop after the current delivery."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class IncomingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    topic: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    payload: dict[str, Any]


def _receive(platform: Platform, handlers: Mapping[str, Handler]) -> Response:
    event = parse(IncomingEvent)
    handler = handlers.get(event.topic)
    if handler is None:
        return ok({"handled": False})
    inbox: Table = platform.database.metadata.tables["inbox"]
    try:
        with platform.database.unit_of_work() as session:
            seen = session.scalar(select(inbox.c.event_id).where(inbox.c.event_id == event.id))
            if seen is None:
                handler(session, event.payload)
                session.execute(
                    inbox.insert().values(
                        event_id=event.id, topic=event.topic, received_at=utcnow()
                    )
                )
    except IntegrityError:  # a concurrent delivery of the same event committed first
        pass
    return ok({"handled": True})


def init_events(app: Flask, platform: Platform, handlers: Mapping[str, Handler]) -> None:
    """The service's inbox route and its relay; handlers run in the receiving transaction."""
    platform.relay = Relay(platform)
    platform.database.after_commit = platform.relay.deliver_after_commit
    app.extensions[INBOX] = True

    @app.post("/internal/events")
    @service_required
    def receive_event() -> Response:
        return _receive(platform, handlers)
