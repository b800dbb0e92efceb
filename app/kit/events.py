"""Events between services that are never lost: an outbox to publish, an inbox to handle.

    outbox = Outbox(Base.metadata)            # models.py: its outbox, inbox and failures
    outbox.publish(session, OrderCancelled(order_id=7))   # in the change's transaction

    def on_payment_succeeded(event: PaymentSucceeded, handling: Handling) -> None:
        with handling() as session:           # the handler's transaction
            ...
    handlers = {PaymentSucceeded: on_payment_succeeded}   # the topics it handles

``publish`` writes the event (``app.kit.topics``) in the same transaction as the change
it reports; the runtime's relay delivers it once that transaction has committed, to the
services that handle its topic. ``receive`` runs a consumer's handler on a delivered
event and says what became of it (``Received``): done, to be retried, or dead. A
handler opens its transaction with ``handling()``, which records the event id in the
inbox in that same transaction, so at-least-once delivery acts exactly once. A handler
that must call out (a payment provider) does that before ``handling()``, in its own short
units of work: no provider is ever called inside a transaction. A handler that cannot
act yet raises ``RetryLater`` (a lost lock conflict, ``DatabaseBusy``, counts as one), and
any other exception counts as a failed handling too:
each is recorded in the consumer's ``event_failures``, which it handles again with
back-off (``retry_failed``, run by the runtime's sweeper), so a transport's delivery is
done once the consumer has the event, handled or recorded. After ``max_attempts`` the
event is a dead letter, kept there for an operator (``microshop events``). A payload that
does not validate against its topic is dead at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from flask import Flask, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.auth import service_required
from app.kit.database import Database, DatabaseBusy, UTCDateTime, utcnow
from app.kit.errors import ApiError
from app.kit.responses import ok
from app.kit.topics import Event
from app.kit.validation import parse

log = logging.getLogger("microshop.events")

INBOX_ROUTE = "/internal/events"
MAX_RETRY_DELAY_SECONDS = 300
RETRIED_AT_ONCE = 50
_PUBLISHED = "microshop.outbox.published"
"""The outbox's own note, in ``session.info``, of the events a unit of work published."""


class RetryLater(ApiError):
    """The event cannot be handled yet (a payment still being charged): deliver it again."""

    status, slug, message = 503, "retry_later", "the event cannot be handled yet"

    def __init__(self, reason: str):
        super().__init__(reason, extra={"reason": reason})


@dataclass(frozen=True)
class Trouble:
    """An event that is not where it should be (``microshop events``)."""

    state: str
    """``unsent`` (in the outbox), ``failing`` (to be handled again) or ``dead``."""
    event_id: str
    topic: str
    attempts: int
    since: datetime
    """When it was published (unsent), or when its handling last failed."""
    last_error: str | None


class Outbox:
    """A service's ``outbox`` and ``inbox`` tables, in its own database."""

    def __init__(self, metadata: MetaData):
        self.table = Table(
            "outbox",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("event_id", String(32), nullable=False, unique=True),
            Column("topic", String(64), nullable=False),
            Column("revision", Integer, nullable=False, default=1),
            Column("payload", Text, nullable=False),
            Column("created_at", UTCDateTime, nullable=False),
            Column("delivered_to", Text, nullable=False, default=""),
            Column("attempts", Integer, nullable=False, default=0),
            Column("next_attempt_at", UTCDateTime, nullable=False, index=True),
            Column("lease_until", UTCDateTime),
            Column("delivered_at", UTCDateTime, index=True),
            Column("last_error", Text),
        )
        self.inbox = Table(
            "inbox",
            metadata,
            Column("event_id", String(32), primary_key=True),
            Column("topic", String(64), nullable=False),
            Column("received_at", UTCDateTime, nullable=False, index=True),
        )
        self.failures = Table(
            "event_failures",
            metadata,
            Column("event_id", String(32), primary_key=True),
            Column("topic", String(64), nullable=False),
            Column("revision", Integer, nullable=False),
            Column("payload", Text, nullable=False),
            Column("attempts", Integer, nullable=False),
            Column("last_error", Text, nullable=False),
            Column("failed_at", UTCDateTime, nullable=False),
            Column("next_attempt_at", UTCDateTime, index=True),
            Column("dead_at", UTCDateTime, index=True),
        )
        """Events this service failed to handle, which it handles again itself
        (``retry_failed``) at ``next_attempt_at``; once the attempts ran out (or the payload
        did not validate), ``dead_at``: a dead letter, kept until an operator retries it."""

    def publish(self, session: Session, event: Event) -> str:
        """Record an event in the caller's transaction; it is delivered once that commits."""
        event_id = uuid.uuid4().hex
        now = utcnow()
        session.execute(
            self.table.insert().values(
                event_id=event_id,
                topic=event.topic,
                revision=event.revision,
                payload=event.model_dump_json(),
                created_at=now,
                delivered_to="",
                attempts=0,
                next_attempt_at=now,
            )
        )
        session.info.setdefault(_PUBLISHED, []).append(event_id)
        return event_id

    def troubles(self, session: Session) -> list[Trouble]:
        """What an operator should see: events not sent yet, and events this service
        failed to handle (still to be retried, or dead letters), oldest first."""
        table, failures = self.table, self.failures
        unsent = session.execute(
            select(table).where(table.c.delivered_at.is_(None)).order_by(table.c.id)
        ).mappings()
        failed = session.execute(select(failures).order_by(failures.c.failed_at)).mappings()
        return [
            Trouble(
                "unsent",
                row["event_id"],
                row["topic"],
                row["attempts"],
                row["created_at"],
                row["last_error"],
            )
            for row in unsent
        ] + [
            Trouble(
                "dead" if row["dead_at"] else "failing",
                row["event_id"],
                row["topic"],
                row["attempts"],
                row["failed_at"],
                row["last_error"],
            )
            for row in failed
        ]

    @staticmethod
    def published(session: Session) -> list[str]:
        """The ids of the events published in ``session``'s unit of work."""
        return list(session.info.get(_PUBLISHED, ()))


class Handling:
    """What a handler is given: ``handling()`` opens its transaction, with its inbox row.

    Once per event: the inbox row marks the event done, so a second transaction would
    find it there already."""

    def __init__(self, database: Database, outbox: Outbox, event_id: str, topic: str):
        self.database = database
        self.outbox = outbox
        self.event_id = event_id
        self.topic = topic
        self.recorded = False

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        if self.recorded:
            raise RuntimeError(f"event {self.event_id} is handled already: one transaction")
        with self.database.unit_of_work() as session:
            yield session
            session.execute(
                self.outbox.inbox.insert().values(
                    event_id=self.event_id, topic=self.topic, received_at=utcnow()
                )
            )
            failures = self.outbox.failures
            session.execute(delete(failures).where(failures.c.event_id == self.event_id))
        self.recorded = True


Handler = Callable[[Any, Handling], None]
"""``on_<topic>(event, handling)``: acts on one event, exactly once."""
Handlers = Mapping[type[Event], Handler]
"""A consumer's handlers, by the event model of the topic each handles."""


class IncomingEvent(BaseModel):
    """An event as it travels between services."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    topic: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    revision: Annotated[int, Field(ge=1)] = 1
    payload: Any


class Outcome(StrEnum):
    DONE = "done"
    """Handled (now or before), or of a topic this service does not handle."""
    RETRY = "retry"
    """Not handled this time: deliver it again later."""
    DEAD = "dead"
    """Never to be handled as it is: a dead letter, recorded in ``event_failures``."""


@dataclass(frozen=True)
class Received:
    outcome: Outcome
    reason: str | None = None


def receive(
    database: Database,
    outbox: Outbox,
    handlers: Handlers,
    event: IncomingEvent,
    *,
    max_attempts: int,
) -> Received:
    """Run the handler of ``event``'s topic, once per event id, and say what became of it."""
    model = next((model for model in handlers if model.topic == event.topic), None)
    if model is None:
        return Received(Outcome.DONE, "not a topic this service handles")
    inbox = outbox.inbox
    with database.unit_of_work(readonly=True) as session:
        seen = session.scalar(select(inbox.c.event_id).where(inbox.c.event_id == event.id))
    if seen is not None:
        return Received(Outcome.DONE, "handled before")
    try:
        typed = model.read(event.revision, event.payload)
    except ValueError as invalid:
        reason = f"the payload is not a {event.topic} of revision {model.revision}: {invalid}"
        return _failed(database, outbox, event, reason, dead=True)
    handling = Handling(database, outbox, event.id, event.topic)
    try:
        handlers[model](typed, handling)
        if not handling.recorded:  # a handler with nothing to change: the event is still done
            with handling():
                pass
    except IntegrityError:  # a concurrent delivery of the same event committed first
        return Received(Outcome.DONE, "handled by a concurrent delivery")
    except RetryLater as later:
        return _failed(database, outbox, event, f"retry later: {later.message}", max_attempts)
    except DatabaseBusy as busy:  # rolled back: handled again, as after RetryLater
        log.warning(
            "the %s handler on event %s: %s (%s)", event.topic, event.id, busy, busy.conflict
        )
        return _failed(database, outbox, event, f"retry later: {busy.message}", max_attempts)
    except Exception as error:
        log.exception("the %s handler failed on event %s", event.topic, event.id)
        return _failed(database, outbox, event, f"{type(error).__name__}: {error}", max_attempts)
    return Received(Outcome.DONE)


def _failed(
    database: Database,
    outbox: Outbox,
    event: IncomingEvent,
    reason: str,
    max_attempts: int = 0,
    *,
    dead: bool = False,
) -> Received:
    """Count a failed handling in ``event_failures``; dead once the attempts ran out."""
    failures = outbox.failures
    now = utcnow()
    with database.unit_of_work() as session:
        before = session.scalar(select(failures.c.attempts).where(failures.c.event_id == event.id))
        attempts = (before or 0) + 1
        dead = dead or attempts >= max_attempts
        values = {
            "attempts": attempts,
            "last_error": reason[:1000],
            "failed_at": now,
            "next_attempt_at": None if dead else now + retry_delay(attempts),
            "dead_at": now if dead else None,
        }
        if before is None:
            session.execute(
                failures.insert().values(
                    event_id=event.id,
                    topic=event.topic,
                    revision=event.revision,
                    payload=json.dumps(event.payload),
                    **values,
                )
            )
        else:
            session.execute(update(failures).where(failures.c.event_id == event.id).values(values))
    if dead:
        log.warning("event %s (%s) is a dead letter: %s", event.id, event.topic, reason)
        return Received(Outcome.DEAD, reason)
    return Received(Outcome.RETRY, reason)


def retry_delay(attempts: int) -> timedelta:
    """How long a failed event waits before its next handling: doubling, up to 5 minutes."""
    return timedelta(seconds=min(2**attempts, MAX_RETRY_DELAY_SECONDS))


def retry_failed(
    database: Database,
    outbox: Outbox,
    handlers: Handlers,
    *,
    max_attempts: int,
    event_id: str | None = None,
) -> int:
    """Handle again the failed events that are due (only ``event_id`` if given; never a
    dead letter); returns how many are done now."""
    failures = outbox.failures
    due = (
        select(failures)
        .where(failures.c.dead_at.is_(None))
        .where(failures.c.next_attempt_at <= utcnow())
        .order_by(failures.c.next_attempt_at)
        .limit(RETRIED_AT_ONCE)
    )
    if event_id is not None:
        due = due.where(failures.c.event_id == event_id)
    with database.unit_of_work(readonly=True) as session:
        rows = session.execute(due).mappings().all()
    done = 0
    for row in rows:
        event = IncomingEvent(
            id=row["event_id"],
            topic=row["topic"],
            revision=row["revision"],
            payload=json.loads(row["payload"]),
        )
        received = receive(database, outbox, handlers, event, max_attempts=max_attempts)
        done += received.outcome is Outcome.DONE
    return done


def revive(database: Database, outbox: Outbox, event_id: str) -> bool:
    """Put a dead letter back: its attempts start again from none, and it is due now."""
    failures = outbox.failures
    with database.unit_of_work() as session:
        revived = session.execute(
            update(failures)
            .where(failures.c.event_id == event_id)
            .where(failures.c.dead_at.is_not(None))
            .values(attempts=0, dead_at=None, next_attempt_at=utcnow())
        )
    return revived.rowcount == 1


def init_inbox(
    app: Flask,
    database: Database,
    outbox: Outbox,
    handlers: Handlers,
    *,
    max_attempts: int,
) -> None:
    """``POST /internal/events``: the service's inbox, for service tokens only. It answers
    200 with what became of the event: from then on the event is this service's, handled,
    to be retried by it, or dead."""

    @app.post(INBOX_ROUTE)
    @service_required
    def receive_event() -> Response:
        event = parse(IncomingEvent)
        received = receive(database, outbox, handlers, event, max_attempts=max_attempts)
        return ok({"outcome": received.outcome.value})
