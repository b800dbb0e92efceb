"""Delivering a service's outbox to the services that take events, and retrying.

    relay = Relay(service, peers, subscribers={"order", "payment"}, metrics=metrics)
    relay.watch()                           # deliver right after each commit that published
    sweeper = Sweeper(relay, interval=2.0)  # and at start-up, then every interval seconds
    sweeper.start(); ...; sweeper.stop()   # app.runtime.background.Repeating

The composition builds one relay per service that has an outbox. Each event goes to
every subscriber at ``POST /<subscriber>/internal/events`` (``app.kit.events``): in this
process through its WSGI callable, elsewhere over HTTP. Delivery retries with back-off
until each subscriber acknowledges, so a crash loses nothing.

A relay claims rows with a short lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several processes share the work) and delivers outside any transaction. A subscriber
that answers 503 ``retry_later`` cannot act yet (a payment still being charged): the
event is retried like any failed delivery, and logged without alarm.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.kit.database import utcnow
from app.kit.errors import ServiceUnavailable
from app.kit.events import INBOX_ROUTE, Outbox, RetryLater
from app.kit.peers import Peers
from app.kit.service import ServiceParts
from app.runtime.background import Repeating
from app.runtime.observability import Metrics

LEASE = timedelta(seconds=10)
"""Longer than a delivery usually takes (2 s connect + 5 s read at worst); if one ever
outlasts it, another relay may deliver the event too, and the inbox absorbs the twin."""
MAX_BACKOFF_SECONDS = 300
BATCH = 50
log = logging.getLogger("microshop.events")


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2**attempts, MAX_BACKOFF_SECONDS))


class Relay:
    """Delivers a service's outbox; safe to run in several threads and processes."""

    def __init__(
        self, service: ServiceParts, peers: Peers, subscribers: Iterable[str], metrics: Metrics
    ):
        if service.outbox is None:
            raise ValueError(f"{service.name} has no outbox to relay")
        self.service = service
        self.outbox: Outbox = service.outbox
        self.peers = peers
        self.subscribers = frozenset(subscribers) - {service.name}
        self.metrics = metrics

    def watch(self) -> None:
        """Deliver what each unit of work of the service published, right after it commits."""
        self.service.database.on_commit(self._deliver_committed)

    def deliver(self, event_ids: Iterable[str] | None = None) -> int:
        """Deliver due events (only ``event_ids`` if given); returns how many are done."""
        done = 0
        for row in self._claim(list(event_ids) if event_ids is not None else None):
            done += self._deliver_row(row)
        return done

    def _deliver_committed(self, session: Session) -> None:
        """Right after a commit: try once now; whatever fails is the sweeper's."""
        event_ids = Outbox.published(session)
        if not event_ids:
            return
        try:
            self.deliver(event_ids)
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
        for subscriber in sorted(self.subscribers - delivered):
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
                    "payload": json.loads(row["payload"]),
                },
            )
        except ServiceUnavailable as error:
            return error.message
        if reply.status == 200:
            return None
        if reply.data.get("error") == RetryLater.slug:
            return f"retry later ({reply.data.get('reason', 'not ready yet')})"
        return f"answered {reply.status}"


class Sweeper(Repeating):
    """Delivers what is due at start-up and every ``interval`` seconds (``outbox-<name>``)."""

    def __init__(self, relay: Relay, interval: float):
        super().__init__(f"outbox-{relay.service.name}", relay.deliver, every=interval)
        self.relay = relay
