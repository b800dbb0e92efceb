"""What a process that died mid-charge or mid-refund left is finished, never done twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import flaky_provider
import pytest
from sqlalchemy import select, update
from support import DATABASE_BACKENDS, PASSWORD, bearer, database_urls, make_settings
from werkzeug.test import Client

from app.kit.database import Database, DatabaseBusy, utcnow
from app.kit.service import parts_of
from app.runtime.composition import Application, create_application
from app.settings import ServiceSpec
from payment_service import checkout
from payment_service.idempotency import ABANDONED_AFTER
from payment_service.models import IdempotencyRecord, Payment, PaymentStatus, Refund, RefundStatus
from payment_service.service import STRANDED_AFTER, settle_payment, take_over

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)


def an_order_to_pay(client: Client, username: str) -> tuple[dict[str, str], int, int]:
    """A new user's pending order of 8 USD: their headers, its id and the user's id."""
    body = {"username": username, "password": PASSWORD, "email": f"{username}@example.com"}
    client.post("/user/register", json=body)
    login = client.post("/user/login", json={"username": username, "password": PASSWORD})
    headers = bearer(login.get_json()["data"]["token"])
    order = client.post("/order/", json={"product": "pen", "price": 8}, headers=headers)
    return headers, order.get_json()["data"]["id"], order.get_json()["data"]["userid"]


def test_a_stranded_reservation_is_resumed_under_its_own_payment(application: Application):
    client = Client(application)
    headers, order_id, user_id = an_order_to_pay(client, "kim")
    database = parts_of(application.services["payment"]).database
    with database.unit_of_work() as session:  # as a process that died after reserving
        stranded = Payment(
            order_id=order_id,
            userid=user_id,
            amount_minor=800,
            currency="USD",
            status=PaymentStatus.PROCESSING,
            refunded_minor=0,
            method="tok_mastercard",
            charged_order_id=order_id,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(stranded)
    recent = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert recent.status_code == 409  # it may still be charging: not ours to take

    with database.unit_of_work() as session:
        session.get_one(Payment, stranded.id).updated_at = (
            utcnow() - STRANDED_AFTER - timedelta(seconds=1)
        )
    resumed = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert resumed.status_code == 201
    assert resumed.get_json()["data"]["id"] == stranded.id
    with database.unit_of_work() as session:
        payments = session.query(Payment).filter_by(order_id=order_id).all()
        assert [(p.status, p.method) for p in payments] == [
            (PaymentStatus.SUCCEEDED, "tok_mastercard")
        ]
        assert payments[0].provider_reference is not None
    paid = client.get(f"/order/{order_id}", headers=headers).get_json()["data"]["status"]
    assert paid == "paid"


@dataclass
class FlakyShop:
    """A shop whose payment provider times out on demand, and a signed-in customer."""

    client: Client
    headers: dict[str, str]
    provider: flaky_provider.FlakyProvider
    payments: Application

    @property
    def database(self) -> Database:
        return parts_of(self.payments.services["payment"]).database

    def place_order(self) -> int:
        order = self.client.post(
            "/order/", json={"product": "pen", "price": 8}, headers=self.headers
        )
        return order.get_json()["data"]["id"]

    def order_status(self, order_id: int) -> str:
        return self.client.get(f"/order/{order_id}", headers=self.headers).get_json()["data"][
            "status"
        ]

    def age(self, model: type[Payment] | type[Refund]) -> None:
        """As if the process under way had died ``STRANDED_AFTER`` ago."""
        with self.database.unit_of_work() as session:
            session.execute(
                update(model).values(updated_at=utcnow() - STRANDED_AFTER - timedelta(seconds=1))
            )

    def reconcile(self) -> None:
        app = self.payments.services["payment"]
        with app.app_context():
            parts_of(app).chores["reconcile"].run()


@pytest.fixture
def flaky(tmp_path: Path, backend: str) -> Iterator[FlakyShop]:
    services = tuple(
        ServiceSpec.parse(item) for item in ("user", "order", "payment=flaky_provider:create_app")
    )
    settings = make_settings(tmp_path, database_urls(backend, tmp_path), services=services)
    application = create_application(settings, deliver_events=False)  # no reconciler thread
    for service in application.services.values():
        parts_of(service).database.create_schema()
    client = Client(application)
    body = {"username": "lee", "password": PASSWORD, "email": "lee@example.com"}
    client.post("/user/register", json=body)
    login = client.post("/user/login", json={"username": "lee", "password": PASSWORD})
    headers = bearer(login.get_json()["data"]["token"])
    yield FlakyShop(client, headers, flaky_provider.made[-1], application)
    application.dispose()


def test_a_charge_of_unknown_outcome_is_resumed_never_repeated(flaky: FlakyShop):
    client, headers, provider = flaky.client, flaky.headers, flaky.provider
    order_id = flaky.place_order()
    provider.timing_out = True
    lost = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert lost.status_code == 500  # charged or not: nobody knows yet
    provider.timing_out = False
    blocked = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert blocked.get_json()["data"]["error"] == "order_already_paid"  # not freed: no 2nd charge
    flaky.age(Payment)
    resumed = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert resumed.status_code == 201
    assert list(provider.charges) == [f"payment-{resumed.get_json()['data']['id']}"]
    assert flaky.order_status(order_id) == "paid"


def test_a_charge_of_unknown_outcome_whose_order_is_cancelled_is_settled_then_refunded(
    flaky: FlakyShop,
):
    """The reconciler asks the provider: it did charge, so the payment succeeded, and
    the saga refunds it because its order was cancelled meanwhile."""
    order_id = flaky.place_order()
    flaky.provider.timing_out = True
    assert flaky.client.post("/payment/", json={"order_id": order_id}, headers=flaky.headers)
    flaky.provider.timing_out = False
    cancelled = flaky.client.delete(f"/order/{order_id}", headers=flaky.headers)
    assert cancelled.get_json()["data"]["status"] == "cancelled"
    flaky.reconcile()
    assert flaky.order_status(order_id) == "cancelled"  # too recent: it may be charging
    flaky.age(Payment)
    flaky.reconcile()
    with flaky.database.unit_of_work(readonly=True) as session:
        [payment] = session.scalars(select(Payment))
        [refund] = session.scalars(select(Refund))
    assert (payment.status, payment.refunded_minor) == (PaymentStatus.REFUNDED, 800)
    assert refund.status is RefundStatus.SUCCEEDED
    assert flaky.provider.refunds == [refund.reference]
    assert flaky.order_status(order_id) == "refunded"


def test_a_reservation_the_provider_never_charged_fails_and_frees_the_order(
    flaky: FlakyShop,
):
    order_id = flaky.place_order()
    flaky.provider.unreachable = True
    lost = flaky.client.post("/payment/", json={"order_id": order_id}, headers=flaky.headers)
    assert lost.status_code == 500  # the server cannot tell it from a lost answer
    flaky.provider.unreachable = False
    flaky.age(Payment)
    flaky.reconcile()
    with flaky.database.unit_of_work(readonly=True) as session:
        [payment] = session.scalars(select(Payment))
    assert (payment.status, payment.charged_order_id) == (PaymentStatus.FAILED, None)
    assert flaky.provider.charges == {}
    again = flaky.client.post("/payment/", json={"order_id": order_id}, headers=flaky.headers)
    assert again.status_code == 201
    assert flaky.order_status(order_id) == "paid"


def test_a_refund_of_unknown_outcome_keeps_its_key_and_a_retry_finishes_it(flaky: FlakyShop):
    order_id = flaky.place_order()
    paid = flaky.client.post("/payment/", json={"order_id": order_id}, headers=flaky.headers)
    payment_id = paid.get_json()["data"]["id"]
    keyed = {**flaky.headers, "Idempotency-Key": "refund-once"}
    flaky.provider.timing_out = True
    lost = flaky.client.post(f"/payment/{payment_id}/refund", json={"amount": 3}, headers=keyed)
    assert lost.status_code == 500  # refunded or not: nobody knows yet
    flaky.provider.timing_out = False
    running = flaky.client.post(f"/payment/{payment_id}/refund", json={"amount": 3}, headers=keyed)
    assert running.get_json()["data"]["error"] == "request_in_progress"  # the key is not freed
    with flaky.database.unit_of_work() as session:
        session.execute(
            update(IdempotencyRecord).values(
                created_at=utcnow() - ABANDONED_AFTER - timedelta(seconds=1)
            )
        )
    flaky.age(Refund)
    finished = flaky.client.post(f"/payment/{payment_id}/refund", json={"amount": 3}, headers=keyed)
    assert finished.status_code == 201, finished.get_data(as_text=True)
    with flaky.database.unit_of_work(readonly=True) as session:
        [refund] = session.scalars(select(Refund))
        payment = session.get_one(Payment, payment_id)
    assert finished.get_json()["data"]["id"] == refund.id
    assert refund.status is RefundStatus.SUCCEEDED
    assert flaky.provider.refunds == [refund.reference] * 2  # asked again under its own key
    assert (payment.status, payment.refunded_minor) == (PaymentStatus.PARTIALLY_REFUNDED, 300)


def test_a_retry_while_the_reconciler_settles_its_payment_waits_and_then_gets_it(
    flaky: FlakyShop,
):
    """The key's first request died after charging; two minutes on, the reconciler has
    taken the payment over and is settling it as the retry comes. The retry is told the
    key's work is in progress, not that the order is paid by someone else, and a later
    retry answers with the payment."""
    order_id = flaky.place_order()
    keyed = {**flaky.headers, "Idempotency-Key": "pay-once"}
    flaky.provider.timing_out = True
    lost = flaky.client.post("/payment/", json={"order_id": order_id}, headers=keyed)
    assert lost.status_code == 500  # charged or not: nobody knows yet
    flaky.provider.timing_out = False

    def age_key() -> None:
        with flaky.database.unit_of_work() as session:
            session.execute(
                update(IdempotencyRecord).values(
                    created_at=utcnow() - ABANDONED_AFTER - timedelta(seconds=1)
                )
            )

    age_key()
    flaky.age(Payment)
    with flaky.database.unit_of_work() as session:  # the reconciler takes it over
        [payment] = session.scalars(select(Payment))
        assert take_over(session, Payment, payment.id)
    racing = flaky.client.post("/payment/", json={"order_id": order_id}, headers=keyed)
    assert racing.get_json()["data"]["error"] == "request_in_progress"
    with flaky.database.unit_of_work() as session:  # ... and settles it
        settle_payment(session, payment.id, "ch_settled_by_the_reconciler")
    age_key()  # the racing retry took the key over: as if it too had died long ago
    answered = flaky.client.post("/payment/", json={"order_id": order_id}, headers=keyed)
    assert answered.status_code == 201, answered.get_data(as_text=True)
    assert answered.get_json()["data"]["id"] == payment.id
    replayed = flaky.client.post("/payment/", json={"order_id": order_id}, headers=keyed)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json()["data"]["id"] == payment.id


@pytest.mark.parametrize(
    ("lost", "status", "after"),
    [(1, 201, PaymentStatus.SUCCEEDED), (3, 503, PaymentStatus.PROCESSING)],
    ids=["once", "every_time"],
)
def test_a_charge_whose_recording_loses_lock_conflicts_is_recorded_on_another_try(
    application: Application,
    monkeypatch: pytest.MonkeyPatch,
    lost: int,
    status: int,
    after: PaymentStatus,
):
    """The provider charged, then recording it was chosen as a deadlock's victim (as on
    MariaDB before the take-over fix): the money moved, so the client hears 201, not a
    503 that leaves the payment processing until the reconciler. Only a database busy
    every time is a 503, and the reconciler settles the payment later."""
    client = Client(application)
    headers, order_id, _ = an_order_to_pay(client, "lee")
    attempts: list[int] = []

    def settle_after_lost_conflicts(session, payment_id, charge_reference):
        attempts.append(payment_id)
        if len(attempts) <= lost:
            raise DatabaseBusy("payment", "Deadlock found when trying to get lock")
        return settle_payment(session, payment_id, charge_reference)

    monkeypatch.setattr(checkout.service, "settle_payment", settle_after_lost_conflicts)
    paid = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert paid.status_code == status, paid.get_json()
    assert len(attempts) == min(lost + 1, checkout.RECORD_ATTEMPTS)
    database = parts_of(application.services["payment"]).database
    with database.unit_of_work(readonly=True) as session:
        payments = session.scalars(select(Payment).where(Payment.order_id == order_id)).all()
        assert [p.status for p in payments] == [after]
