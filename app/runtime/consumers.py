"""Taking events from RabbitMQ: each mounted service's durable queue, which every copy of
that service shares (competing consumers), and a queue of this process's own for the
revocations its in-memory deny lists must learn at once.

    consumers = start_consumers(broker, services)   # when MICROSHOP_BROKER_URL is set
    ...; for consumer in consumers: consumer.stop()

A message is handed to the service's ``receive`` (``app.kit.events``), inside the
service's app context, and acked only after its handler's transaction committed; a
failed handling comes back through the broker's delay queues, and a dead letter goes to
``<queue>.dead``. A handling that cannot even record its failure because the service's
database is busy (``DatabaseBusy``) comes back the same way, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import ValidationError

from app.kit.database import DatabaseBusy
from app.kit.deny_list import Revocations
from app.kit.events import IncomingEvent, Outbox, Outcome, receive
from app.kit.service import ServiceParts, parts_of
from app.kit.topics import TokenRevoked, UserTokensInvalidated
from app.runtime.broker import Broker, Consumer, Message
from app.runtime.broker import Outcome as Delivery

log = logging.getLogger("microshop.events")
DELIVERIES = {
    Outcome.DONE: Delivery.DONE,
    Outcome.RETRY: Delivery.RETRY,
    Outcome.DEAD: Delivery.DEAD,
}
REVOCATIONS = {event.topic: event for event in (TokenRevoked, UserTokensInvalidated)}


def queue_of(service: str) -> str:
    """The durable queue of a service, shared by all its copies."""
    return f"microshop.{service}"


def topics_of(service: ServiceParts) -> set[str]:
    return {model.topic for model in service.handlers}


def consuming(services: Mapping[str, Any]) -> dict[str, tuple[Any, ServiceParts, Outbox]]:
    """The mounted services that handle events: their app, parts and outbox, by name."""
    found = {}
    for name, app in services.items():
        service = parts_of(app)
        if service is not None and service.outbox is not None and service.handlers:
            found[name] = (app, service, service.outbox)
    return found


def start_consumers(
    broker: Broker, services: Mapping[str, Any], only: Collection[str] | None = None
) -> list[Consumer]:
    """A consumer of each service's queue (of ``only`` these services, if given), and of
    this process's revocation queue for each in-memory deny list."""
    consumers = []
    for name, (app, service, outbox) in consuming(services).items():
        if only is not None and name not in only:
            continue
        handle = _receiver(app, service, outbox)
        consumers.append(
            broker.consume(queue_of(name), topics_of(service), handle, name=f"events-{name}")
        )
        if service.revocations is not None:
            consumers.append(
                broker.consume(
                    "",
                    set(REVOCATIONS),
                    _learner(service.revocations),
                    exclusive=True,
                    name=f"revocations-{name}",
                )
            )
    return consumers


def _envelope(message: Message) -> IncomingEvent | None:
    try:
        return IncomingEvent.model_validate_json(message.body)
    except ValidationError as error:
        log.warning("message %s (%s) is not an event: %s", message.id, message.topic, error)
        return None


def _receiver(app: Any, service: ServiceParts, outbox: Outbox) -> Callable[[Message], Delivery]:
    """``receive`` for the service's queue: what it says becomes the message's fate."""

    def handle(message: Message) -> Delivery:
        event = _envelope(message)
        if event is None:
            return Delivery.DEAD
        try:
            with app.app_context():
                received = receive(
                    service.database,
                    outbox,
                    service.handlers,
                    event,
                    max_attempts=service.settings.event_max_attempts,
                )
        except DatabaseBusy as busy:
            log.warning(
                "event %s (%s) is retried: %s (%s)", event.id, event.topic, busy, busy.conflict
            )
            return Delivery.RETRY
        return DELIVERIES[received.outcome]

    return handle


def _learner(revocations: Revocations) -> Callable[[Message], Delivery]:
    """This process's deny list learns a revocation at once; the service's own queue
    stores it in its database (for the processes that start later)."""

    def learn(message: Message) -> Delivery:
        event = _envelope(message)
        if event is None or event.topic not in REVOCATIONS:
            return Delivery.DEAD
        try:
            revocations.learn(REVOCATIONS[event.topic].read(event.revision, event.payload))
        except ValueError as invalid:
            log.warning("revocation %s not understood: %s", event.id, invalid)
            return Delivery.DEAD
        return Delivery.DONE

    return learn
