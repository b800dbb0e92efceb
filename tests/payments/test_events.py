"""The payment service's event handler: a cancelled order's payment is refunded once,
with no provider call inside a transaction, and "not yet" is an answer, not an error."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from support import DATABASE_BACKENDS

import payment_service
from app.kit.database import Database, utcnow
from app.kit.events import IncomingEvent, Outcome, Received, receive
from app.settings import Settings
from payment_service.errors import ProviderFailed
from payment_service.models import Payment, PaymentStatus, Refund, RefundStatus, outbox
from payment_service.providers import SandboxProvider
from payment_service.service import STRANDED_AFTER

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

ORDER_ID = 3


class RecordingProvider(SandboxProvider):
    """The sandbox, which can be made to refuse refunds (``failing``) or leave their
    outcome unknown (``silent``), and which checks that no transaction of the payment
    database is open while it works."""

    def __init__(self, database: Database | None = None):
        super().__init__()
        self.database = database
        self.failing = False
        self.silent = False
        self.refunds: list[str] = []

    def refund(
        self, *, charge_reference: str, amount_minor: int, currency: str, reference: str
    ) -> str:
        if self.database is not None:  # a write would wait if a transaction held the lock
            with self.database.unit_of_work() as session:
                session.get(Payment, 1)
        if self.failing:
            raise ProviderFailed("the provider refused the refund")
        self.refunds.append(reference)
        if self.silent:  # made, but the answer never comes back
            raise TimeoutError("the provider did not answer")
        return super().refund(
            charge_reference=charge_reference,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
        )


@pytest.fixture
def provider() -> RecordingProvider:
    return RecordingProvider()


@pytest.fixture
def app(settings: Settings, provider: RecordingProvider) -> Iterator[Flask]:
    app = payment_service.create_app(settings, provider=provider)
    database: Database = app.extensions["microshop"].database
    database.create_schema()
    provider.database = database
    yield app
    database.dispose()


def database_of(app: Flask) -> Database:
    return app.extensions["microshop"].database


def a_payment(app: Flask, status: PaymentStatus, refunded_minor: int = 0) -> int:
    with database_of(app).unit_of_work() as session:
        payment = Payment(
            order_id=ORDER_ID,
            userid=1,
            amount_minor=1000,
            currency="USD",
            status=status,
            refunded_minor=refunded_minor,
            method="tok_visa",
            charged_order_id=ORDER_ID,
            provider_reference="ch_1",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(payment)
        session.flush()
        return payment.id


def deliver(app: Flask, event_id: str) -> Received:
    """``order.cancelled`` for the order, as any transport hands it to the service."""
    parts = app.extensions["microshop"]
    event = IncomingEvent(id=event_id, topic="order.cancelled", payload={"order_id": ORDER_ID})
    with app.app_context():
        return receive(parts.database, parts.outbox, parts.handlers, event, max_attempts=10)


def state(app: Flask) -> dict[str, Any]:
    with database_of(app).unit_of_work(readonly=True) as session:
        payment = session.scalars(select(Payment)).one()
        return {
            "status": payment.status,
            "refunded_minor": payment.refunded_minor,
            "refunds": [
                (r.amount_minor, r.status)
                for r in session.scalars(select(Refund).order_by(Refund.id))
            ],
            "inbox": list(session.scalars(select(outbox.inbox.c.event_id))),
            "published": [
                (topic, json.loads(payload))
                for topic, payload in session.execute(
                    select(outbox.table.c.topic, outbox.table.c.payload)
                )
            ],
        }


def test_a_cancelled_orders_payment_is_refunded_in_full_once(app, provider):
    payment_id = a_payment(app, PaymentStatus.PARTIALLY_REFUNDED, refunded_minor=300)
    event_id = uuid.uuid4().hex
    for _ in range(2):  # delivered twice, as at-least-once delivery may
        received = deliver(app, event_id)
        assert received.outcome is Outcome.DONE, received.reason
    assert state(app) == {
        "status": PaymentStatus.REFUNDED,
        "refunded_minor": 1000,
        "refunds": [(700, RefundStatus.SUCCEEDED)],
        "inbox": [event_id],
        "published": [("payment.refunded", {"payment_id": payment_id, "order_id": ORDER_ID})],
    }
    assert provider.refunds == references(app)  # made once, under the refund's own key


def references(app: Flask) -> list[str]:
    with database_of(app).unit_of_work(readonly=True) as session:
        return list(session.scalars(select(Refund.reference).order_by(Refund.id)))


def test_an_order_without_a_payment_is_done_at_once(app, provider):
    event_id = uuid.uuid4().hex
    assert deliver(app, event_id).outcome is Outcome.DONE
    with database_of(app).unit_of_work(readonly=True) as session:
        assert list(session.scalars(select(outbox.inbox.c.event_id))) == [event_id]
    assert provider.refunds == []


def test_a_payment_still_being_charged_is_retried_later_without_an_error(
    app, provider, caplog: pytest.LogCaptureFixture
):
    a_payment(app, PaymentStatus.PROCESSING)
    with caplog.at_level(logging.INFO):
        received = deliver(app, uuid.uuid4().hex)
    assert received == Received(Outcome.RETRY, "retry later: payment 1 is still being charged")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert state(app)["inbox"] == []  # not done: delivered again later
    assert provider.refunds == []


def test_a_refund_the_provider_refuses_no_longer_counts_and_is_tried_again(
    app, provider, caplog: pytest.LogCaptureFixture
):
    a_payment(app, PaymentStatus.SUCCEEDED)
    event_id = uuid.uuid4().hex
    provider.failing = True
    with caplog.at_level(logging.WARNING, logger="microshop.payments"):
        received = deliver(app, event_id)
    assert received.outcome is Outcome.RETRY
    [warning] = [r for r in caplog.records if r.name == "microshop.payments"]
    assert "ProviderFailed: the provider refused the refund" in warning.getMessage()
    assert warning.exc_info is None  # the cause, not a traceback
    assert state(app)["refunded_minor"] == 0
    assert state(app)["refunds"] == [(1000, RefundStatus.FAILED)]  # kept, not counted
    assert state(app)["inbox"] == []

    provider.failing = False
    assert deliver(app, event_id).outcome is Outcome.DONE
    assert state(app)["status"] is PaymentStatus.REFUNDED
    assert state(app)["refunds"] == [(1000, RefundStatus.FAILED), (1000, RefundStatus.SUCCEEDED)]
    assert provider.refunds == references(app)[1:]


def test_a_refund_of_unknown_outcome_stays_counted_until_it_is_made_under_its_key(app, provider):
    """The provider may have refunded: the refund stays pending and counted, the event
    waits, and the reconciler makes it again under the same key once it is stranded."""
    a_payment(app, PaymentStatus.SUCCEEDED)
    event_id = uuid.uuid4().hex
    provider.silent = True
    assert deliver(app, event_id).outcome is Outcome.RETRY
    assert state(app)["refunded_minor"] == 1000
    assert state(app)["refunds"] == [(1000, RefundStatus.PENDING)]
    provider.silent = False
    waiting = deliver(app, event_id)
    assert waiting == Received(Outcome.RETRY, "retry later: a refund of payment 1 is under way")

    reconcile(app)  # too recent: it may still be under way in a live process
    assert state(app)["refunds"] == [(1000, RefundStatus.PENDING)]
    age_refunds(app)
    reconcile(app)
    assert state(app)["status"] is PaymentStatus.REFUNDED
    assert state(app)["refunds"] == [(1000, RefundStatus.SUCCEEDED)]
    assert provider.refunds == references(app) * 2  # asked twice, under one key
    assert deliver(app, event_id).outcome is Outcome.DONE
    assert state(app)["inbox"] == [event_id]


def reconcile(app: Flask) -> None:
    with app.app_context():
        app.extensions["microshop"].chores["reconcile"].run()


def age_refunds(app: Flask) -> None:
    with database_of(app).unit_of_work() as session:
        for refund in session.scalars(select(Refund)):
            refund.updated_at = utcnow() - STRANDED_AFTER - timedelta(seconds=1)


def a_pending_refund(app: Flask, payment_id: int, amount_minor: int) -> None:
    with database_of(app).unit_of_work() as session:
        session.add(
            Refund(
                payment_id=payment_id,
                amount_minor=amount_minor,
                status=RefundStatus.PENDING,
                reference="refund-elsewhere",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )


def test_a_refund_under_way_elsewhere_is_waited_for(app, provider):
    """Everything is counted but not yet answered: another delivery is calling the
    provider. Acknowledging now could lose the refund if that one fails."""
    payment_id = a_payment(app, PaymentStatus.SUCCEEDED, refunded_minor=1000)
    a_pending_refund(app, payment_id, 1000)
    received = deliver(app, uuid.uuid4().hex)
    assert received == Received(Outcome.RETRY, "retry later: a refund of payment 1 is under way")
    assert provider.refunds == []


@pytest.mark.parametrize(
    "status",
    [PaymentStatus.REFUNDED, PaymentStatus.SUCCEEDED],  # counted in full by a release before 0003
)
def test_a_payment_refunded_in_full_already_is_done(app, provider, status: PaymentStatus):
    a_payment(app, status, refunded_minor=1000)
    event_id = uuid.uuid4().hex
    assert deliver(app, event_id).outcome is Outcome.DONE
    assert state(app)["inbox"] == [event_id]
    assert provider.refunds == []
