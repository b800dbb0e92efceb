"""Delivering a service's outbox to the services that take events, and retrying.

    relay = Relay(service, peers, {"order": {"payment.succeeded"}, "remote": None}, metrics)
    relay.watch()                           # deliver right after each commit that published
    sweeper = Sweeper(relay, interval=2.0, retention=timedelta(days=7))
    sweeper.start(); ...; sweeper.stop()   # app.runtime.background.Repeating

The composition builds one relay per service that has an outbox. Each event goes to
every subscriber that handles its topic (one known only by URL may handle any) at
``POST /<subscriber>/internal/events`` (``app.kit.events``): in this process through its
WSGI callable, elsewhere over HTTP. Delivery retries with back-off until each subscriber
has handled it or recorded it as a dead letter, so a crash loses nothing. The sweeper
also deletes sent events, and the inbox's event ids, older than the retention.

With a broker (``MICROSHOP_BROKER_URL``) the relay publishes each event to RabbitMQ
instead, confirmed (``app.runtime.broker``), and the broker routes it to the queues of
the services that handle its topic. While the broker is failing, the requests that
publish do not wait on it: their events are left to the sweeper for ``BROKER_COOLDOWN``.

A relay claims rows with a short lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several processes share the work) and delivers outside any transaction. A subscriber
that answers has the event: handled, or recorded to be handled again by it
(``app.kit.events.retry_failed``), or dead; only an unreachable subscriber or an error
answer leaves the event to be delivered again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.kit.database import DatabaseBusy, utcnow
from app.kit.errors import ServiceUnavailable
from app.kit.events import INBOX_ROUTE, Outbox, retry_failed
from app.kit.peers import Peers
from app.kit.service import ServiceParts
from app.runtime.background import Repeating
from app.runtime.broker import Broker, BrokerUnavailable, Message
from app.runtime.observability import Metrics

LEASE = timedelta(seconds=10)
"""Longer than a delivery usually takes (2 s connect + 5 s read at worst); if one ever
outlasts it, another relay may deliver the event too, and the inbox absorbs the twin."""
MAX_BACKOFF_SECONDS = 300
BATCH = 50
PRUNE_BATCH = 1000
"""Rows deleted per statement, so pruning never holds a long write lock."""
PRUNE_EVERY = timedelta(minutes=1)
BROKER_COOLDOWN = 5.0
"""Seconds after a failed publish during which only the sweeper tries the broker."""
log = logging.getLogger("microshop.events")


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2**attempts, MAX_BACKOFF_SECONDS))


class Relay:
    """Delivers a service's outbox; safe to run in several threads and processes.

    ``subscriptions`` names each service that takes events, with the topics it handles,
    or None for one known only by URL, which may handle any. With a ``broker`` the relay
    publishes to RabbitMQ instead, which routes each event to the queues of the services
    that handle its topic; an event is sent once the broker confirmed it."""

    def __init__(
        self,
        service: ServiceParts,
        peers: Peers,
        subscriptions: Mapping[str, Collection[str] | None],
        metrics: Metrics,
        broker: Broker | None = None,
    ):
        if service.outbox is None:
            raise ValueError(f"{service.name} has no outbox to relay")
        self.service = service
        self.outbox: Outbox = service.outbox
        self.peers = peers
        self.subscriptions = {
            name: None if topics is None else frozenset(topics)
            for name, topics in subscriptions.items()
            if name != service.name
        }
        self.metrics = metrics
        self.broker = broker
        self._broker_failed_at = -BROKER_COOLDOWN

    def subscribers(self, topic: str) -> frozenset[str]:
        """The services an event of ``topic`` goes to."""
        return frozenset(
            name for name, topics in self.subscriptions.items() if topics is None or topic in topics
        )

    def watch(self) -> None:
        """Deliver what each unit of work of the service published, right after it commits."""
        self.service.database.on_commit(self._deliver_committed)

    def deliver(self, event_ids: Iterable[str] | None = None) -> int:
        """Deliver due events (only ``event_ids`` if given); returns how many are done."""
        rows = self._claim(list(event_ids) if event_ids is not None else None)
        if self.broker is not None:
            return self._publish(self.broker, rows) if rows else 0
        return sum(self._deliver_row(row) for row in rows)

    def _publish(self, broker: Broker, rows: list[Mapping[str, Any]]) -> int:
        """Publish to the broker; each row is sent once the broker confirmed it."""
        try:
            broker.publish([message_of(row) for row in rows])
            confirmed, error = {row["event_id"] for row in rows}, None
        except BrokerUnavailable as failure:
            self._broker_failed_at = time.monotonic()
            confirmed, error = set(failure.confirmed), str(failure)
            log.warning(
                "%d events of %s not sent: %s", len(rows) - len(confirmed), self.service.name, error
            )
        now = utcnow()
        table = self.outbox.table
        with self.service.database.unit_of_work() as session:
            for row in rows:
                values: dict[str, Any] = {"lease_until": None}
                if row["event_id"] in confirmed:
                    values.update(delivered_to="broker", delivered_at=now, last_error=None)
                else:
                    values.update(
                        attempts=row["attempts"] + 1,
                        next_attempt_at=now + backoff(row["attempts"]),
                        last_error=f"broker: {error}"[:1000],
                    )
                    self.metrics.delivery_failed(self.service.name, "broker")
                session.execute(update(table).where(table.c.id == row["id"]).values(values))
        return len(confirmed)

    def prune(self, retention: timedelta) -> int:
        """Delete sent events and handled event ids older than ``retention``, in batches;
        returns how many rows went. An event delivered again after its id went would be
        handled again, so the retention is far longer than any redelivery takes."""
        cutoff = utcnow() - retention
        table, inbox = self.outbox.table, self.outbox.inbox
        pruned = 0
        for key, old in (
            (table.c.id, table.c.delivered_at),
            (inbox.c.event_id, inbox.c.received_at),
        ):
            while True:  # ids first: MariaDB/MySQL refuse a LIMIT inside IN (subquery)
                with self.service.database.unit_of_work() as session:
                    ids = session.scalars(select(key).where(old < cutoff).limit(PRUNE_BATCH)).all()
                    if ids:
                        session.execute(delete(key.table).where(key.in_(ids)))
                pruned += len(ids)
                if len(ids) < PRUNE_BATCH:
                    break
        return pruned

    def _deliver_committed(self, session: Session) -> None:
        """Right after a commit: try once now; whatever fails is the sweeper's."""
        event_ids = Outbox.published(session)
        if not event_ids:
            return
        if self.broker is not None and time.monotonic() - self._broker_failed_at < BROKER_COOLDOWN:
            return  # the broker just failed: the sweeper publishes, not this request
        try:
            self.deliver(event_ids)
        except DatabaseBusy as busy:  # expected under contention: no traceback
            log.warning(
                "delivery after commit: %s (%s); the sweeper will retry", busy, busy.conflict
            )
        except Exception:  # the sweeper retries; the request that published has succeeded
            log.exception("delivery after commit failed; the sweeper will retry")

    def _claim(self, event_ids: list[str] | None) -> list[Mapping[str, Any]]:
        table = self.outbox.table
        now = utcnow()
        query = (
            select(table)
            .where(table.c.delivered_at.is_(None))
            .where(or_(table.c.lease_until.is_(None), table.c.lease_until < now))
            .order_by(table.c.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        if event_ids is not None:
            query = query.where(table.c.event_id.in_(event_ids))
        else:
            query = query.where(table.c.next_attempt_at <= now)
        with self.service.database.unit_of_work() as session:
            rows = [dict(row) for row in session.execute(query).mappings()]
            if rows:
                session.execute(
                    update(table)
                    .where(table.c.id.in_([row["id"] for row in rows]))
                    .values(lease_until=now + LEASE)
                )
        return rows

    def _deliver_row(self, row: Mapping[str, Any]) -> int:
        delivered = {name for name in row["delivered_to"].split(",") if name}
        errors = []
        for subscriber in sorted(self.subscribers(row["topic"]) - delivered):
            error = self._deliver_to(subscriber, row)
            if error is None:
                delivered.add(subscriber)
            else:
                errors.append(f"{subscriber}: {error}")
                self.metrics.delivery_failed(self.service.name, subscriber)
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
        table = self.outbox.table
        with self.service.database.unit_of_work() as session:
            session.execute(update(table).where(table.c.id == row["id"]).values(values))
        return int(finished)

    def _deliver_to(self, subscriber: str, row: Mapping[str, Any]) -> str | None:
        """None once ``subscriber`` has the event; else why it has not."""
        try:
            reply = self.peers.call(
                subscriber,
                "POST",
                INBOX_ROUTE,
                caller=self.service.name,
                json_body={
                    "id": row["event_id"],
                    "topic": row["topic"],
                    "revision": row["revision"],
                    "payload": json.loads(row["payload"]),
                },
            )
        except ServiceUnavailable as error:
            return error.message
        if reply.status == 200:  # handled, or the subscriber's to retry: it has the event
            return None
        return f"answered {reply.status}"


def message_of(row: Mapping[str, Any]) -> Message:
    """An outbox row as the broker carries it: the event's envelope as JSON."""
    envelope = {
        "id": row["event_id"],
        "topic": row["topic"],
        "revision": row["revision"],
        "payload": json.loads(row["payload"]),
    }
    return Message(id=row["event_id"], topic=row["topic"], body=json.dumps(envelope).encode())


class Sweeper(Repeating):
    """At start-up and every ``interval`` seconds (``outbox-<name>``): delivers what is
    due, handles again the events the service failed to handle that are due, and, at most
    every ``PRUNE_EVERY``, prunes what is older than ``retention``."""

    def __init__(self, relay: Relay, interval: float, retention: timedelta):
        super().__init__(f"outbox-{relay.service.name}", self.sweep, every=interval)
        self.relay = relay
        self.retention = retention
        self._pruned_at: datetime | None = None

    def sweep(self) -> None:
        self.relay.deliver()
        service = self.relay.service
        if self.relay.broker is None:  # else the broker's delay queues bring them back
            retry_failed(
                service.database,
                self.relay.outbox,
                service.handlers,
                max_attempts=service.settings.event_max_attempts,
            )
        now = utcnow()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self.relay.prune(self.retention)
            self._pruned_at = now
