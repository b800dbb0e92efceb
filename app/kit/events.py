"""Events between services that are never lost: an outbox to publish, an inbox to handle.

    outbox = Outbox(Base.metadata)                      # models.py: its outbox and inbox tables
    outbox.publish(session, "order.cancelled", {"order_id": 7})   # in the change's transaction

    def on_payment_succeeded(payload: dict, handling: Handling) -> None:   # events.py
        with handling() as session:                     # the handler's transaction
            ...

``publish`` writes the event in the same transaction as the change it reports; the
runtime's relay delivers it once that transaction has committed, to every service whose
inbox takes events (``POST /<service>/internal/events``). A handler opens its transaction
with ``handling()``, which records the event id in the inbox in that same transaction, so
at-least-once delivery acts exactly once. A handler that must call out (a payment
provider) does that before ``handling()``, in its own short units of work: no provider is
ever called inside a transaction. A handler that cannot act yet raises ``RetryLater``: its
delivery is answered 503 ``retry_later`` and retried, without a traceback in the log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from flask import Flask, Response
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.auth import service_required
from app.kit.database import Database, UTCDateTime, utcnow
from app.kit.errors import ApiError
from app.kit.responses import ok
from app.kit.validation import parse

INBOX_ROUTE = "/internal/events"
_PUBLISHED = "microshop.outbox.published"
"""The outbox's own note, in ``session.info``, of the events a unit of work published."""


class RetryLater(ApiError):
    """The event cannot be handled yet (a payment still being charged): deliver it again."""

    status, slug, message = 503, "retry_later", "the event cannot be handled yet"

    def __init__(self, reason: str):
        super().__init__(reason, extra={"reason": reason})


class Outbox:
    """A service's ``outbox`` and ``inbox`` tables, in its own database."""

    def __init__(self, metadata: MetaData):
        self.table = Table(
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
        self.inbox = Table(
            "inbox",
            metadata,
            Column("event_id", String(32), primary_key=True),
            Column("topic", String(64), nullable=False),
            Column("received_at", UTCDateTime, nullable=False),
        )

    def publish(self, session: Session, topic: str, payload: dict[str, Any]) -> str:
        """Record an event in the caller's transaction; it is delivered once that commits."""
        event_id = uuid.uuid4().hex
        now = utcnow()
        session.execute(
            self.table.insert().values(
                event_id=event_id,
                topic=topic,
                payload=json.dumps(payload),
                created_at=now,
                delivered_to="",
                attempts=0,
                next_attempt_at=now,
            )
        )
        session.info.setdefault(_PUBLISHED, []).append(event_id)
        return event_id

    @staticmethod
    def published(session: Session) -> list[str]:
        """The ids of the events published in ``session``'s unit of work."""
        return list(session.info.get(_PUBLISHED, ()))


class Handling:
    """What a handler is given: ``handling()`` opens its transaction, with its inbox row.

    Once per event: the inbox row marks the event done, so a second transaction would
    find it there already."""

    def __init__(self, database: Database, inbox: Table, event_id: str, topic: str):
        self.database = database
        self.inbox = inbox
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
                self.inbox.insert().values(
                    event_id=self.event_id, topic=self.topic, received_at=utcnow()
                )
            )
        self.recorded = True


Handler = Callable[[dict[str, Any], Handling], None]
"""``on_<topic>(payload, handling)``: acts on one event, exactly once."""


class IncomingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    topic: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    payload: dict[str, Any]


def handle(database: Database, outbox: Outbox, handlers: Mapping[str, Handler]) -> Response:
    """Run the handler of the event in the request, once per event id."""
    event = parse(IncomingEvent)
    handler = handlers.get(event.topic)
    if handler is None:
        return ok({"handled": False})
    inbox = outbox.inbox
    with database.unit_of_work(readonly=True) as session:
        seen = session.scalar(select(inbox.c.event_id).where(inbox.c.event_id == event.id))
    if seen is not None:
        return ok({"handled": True})
    handling = Handling(database, inbox, event.id, event.topic)
    try:
        handler(event.payload, handling)
        if not handling.recorded:  # a handler with nothing to change: the event is still done
            with handling():
                pass
    except IntegrityError:  # a concurrent delivery of the same event committed first
        pass
    return ok({"handled": True})


def init_inbox(
    app: Flask, database: Database, outbox: Outbox, handlers: Mapping[str, Handler]
) -> None:
    """``POST /internal/events``: the service's inbox, for service tokens only."""

    @app.post(INBOX_ROUTE)
    @service_required
    def receive_event() -> Response:
        return handle(database, outbox, handlers)
