"""The events services tell each other: one pydantic model per topic, with a revision.

    outbox.publish(session, OrderCancelled(order_id=7))        # the publisher
    handlers = {PaymentSucceeded: on_payment_succeeded}         # a consumer: the model back

They are the one contract between services besides HTTP, so they live in the platform,
which every service shares; a service never imports another's models. A topic's
``revision`` (the version of its payload) goes up when its payload changes in a way an
older consumer cannot read; a payload that does not validate against its topic's model,
or comes with another revision, is a dead letter at once, never retried.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[int, Field(ge=1)]


class Event(BaseModel):
    """An event's payload; subclasses name their ``topic`` and ``revision``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    topic: ClassVar[str]
    revision: ClassVar[int] = 1

    @classmethod
    def read(cls, revision: int, payload: Any) -> Event:
        """The event from a message; ``ValueError`` when it is not one of this revision."""
        if revision != cls.revision:
            raise ValueError(f"{cls.topic} revision {revision} is not {cls.revision}")
        return cls.model_validate(payload)


class PaymentSucceeded(Event):
    """A payment was charged: its order is paid."""

    topic = "payment.succeeded"
    payment_id: Id
    order_id: Id


class PaymentRefunded(Event):
    """A payment was refunded in full: its order is refunded."""

    topic = "payment.refunded"
    payment_id: Id
    order_id: Id


class OrderCancelled(Event):
    """An order was cancelled: its payment, if any, is refunded."""

    topic = "order.cancelled"
    order_id: Id


class TokenRevoked(Event):
    """A token was logged out: every service refuses it until it expires."""

    topic = "token.revoked"
    jti: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    user_id: Id
    expires_at: int
    """When the token expires anyway, in seconds since the epoch (its ``exp`` claim)."""


class UserTokensInvalidated(Event):
    """A user changed their password: every token with an older ``ver`` is refused."""

    topic = "user.tokens_invalidated"
    user_id: Id
    version: Annotated[int, Field(ge=0)]
    """The user's token version now: tokens with an older ``ver`` claim are refused."""


TOPICS: dict[str, type[Event]] = {
    event.topic: event
    for event in (
        PaymentSucceeded,
        PaymentRefunded,
        OrderCancelled,
        TokenRevoked,
        UserTokensInvalidated,
    )
}
"""Every topic, by name."""
