"""The payment rules (service.py) on a real database, without Flask or HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support import DATABASE_BACKENDS, ONLY_MYSQL, ONLY_POSTGRES, service_database

from app.kit.auth import Caller
from app.kit.database import Database, utcnow
from app.kit.errors import Forbidden, NotFound
from payment_service import service
from payment_service.errors import (
    OrderAlreadyPaid,
    OrderNotPayable,
    PaymentNotRefundable,
    RefundExceedsPayment,
)
from payment_service.models import Base, Payment, PaymentStatus, Refund, RefundStatus, outbox
from payment_service.orders import OrderFacts
from payment_service.schemas import PaymentQuery

ALICE, BOB, ADMIN = Caller(1, "user"), Caller(2, "user"), Caller(9, "admin")

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[Database]:
    with service_database(backend, tmp_path, "payment", Base.metadata) as database:
        yield database


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.unit_of_work() as session:
        yield session


def order(
    order_id: int = 1, *, owner: Caller = ALICE, status: str = "pending", amount_minor: int = 1000
) -> OrderFacts:
    return OrderFacts(
        id=order_id, userid=owner.id, amount_minor=amount_minor, currency="USD", status=status
    )


def reserved(session: Session, order_id: int = 1, payer: Caller = ALICE) -> Payment:
    return service.reserve_payment(session, payer, order(order_id, owner=payer), "tok_visa")


def paid(session: Session, order_id: int = 1, payer: Caller = ALICE) -> Payment:
    payment = reserved(session, order_id, payer)
    return service.settle_payment(session, payment.id, f"ch_{order_id}")


def failed(session: Session, order_id: int = 1, payer: Caller = ALICE) -> Payment:
    payment = reserved(session, order_id, payer)
    return service.fail_payment(session, payment.id, "card declined")


def events(session: Session) -> list[tuple[str, dict[str, Any]]]:
    """The outbox, oldest first: (topic, payload)."""
    table = outbox.table
    rows = session.execute(select(table.c.topic, table.c.payload).order_by(table.c.id))
    return [(topic, json.loads(payload)) for topic, payload in rows]


def refunded_minor(session: Session, payment_id: int) -> int:
    """What the database counts as refunded (not the in-memory object)."""
    return session.scalar(select(Payment.refunded_minor).where(Payment.id == payment_id))


def payment_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Payment))


def listed(session: Session, caller: Caller, query: PaymentQuery | None = None) -> list[int]:
    return [p.id for p in service.list_payments(session, caller, query or PaymentQuery()).items]


# --- paying ------------------------------------------------------------------------------


def test_an_order_that_does_not_exist_is_not_found():
    with pytest.raises(NotFound):
        service.check_payable(None, ALICE)


@pytest.mark.parametrize("caller", [BOB, ADMIN], ids=["another_user", "an_admin"])
@pytest.mark.parametrize("status", ["pending", "paid", "cancelled"])
def test_only_the_orders_owner_may_pay_it_whatever_its_status(caller: Caller, status: str):
    with pytest.raises(Forbidden):
        service.check_payable(order(owner=ALICE, status=status), caller)


@pytest.mark.parametrize("status", ["paid", "refunded"])
def test_an_order_paid_before_is_already_paid(status: str):
    with pytest.raises(OrderAlreadyPaid) as raised:
        service.check_payable(order(status=status), ALICE)
    assert raised.value.slug == "order_already_paid"


def test_a_cancelled_order_is_not_payable():
    with pytest.raises(OrderNotPayable) as raised:
        service.check_payable(order(status="cancelled"), ALICE)
    assert raised.value.slug == "order_not_payable"


def test_a_pending_order_of_the_caller_is_payable():
    facts = order(status="pending")
    assert service.check_payable(facts, ALICE) is facts


def test_a_reservation_is_a_processing_payment_holding_the_orders_charge(session: Session):
    payment = service.reserve_payment(session, ALICE, order(7, amount_minor=1250), "tok_mastercard")
    stored = session.execute(
        select(
            Payment.status,
            Payment.order_id,
            Payment.userid,
            Payment.amount_minor,
            Payment.currency,
            Payment.refunded_minor,
            Payment.method,
            Payment.charged_order_id,
        ).where(Payment.id == payment.id)
    ).one()
    assert tuple(stored) == (
        PaymentStatus.PROCESSING,
        7,
        ALICE.id,
        1250,
        "USD",
        0,
        "tok_mastercard",
        7,
    )
    assert events(session) == []


def test_a_second_reservation_of_the_same_order_is_refused(database: Database):
    with database.unit_of_work() as session:
        first = reserved(session)
    with pytest.raises(OrderAlreadyPaid) as raised, database.unit_of_work() as session:
        reserved(session)
    assert raised.value.slug == "order_already_paid"
    with database.unit_of_work() as session:
        assert payment_count(session) == 1
        assert service.settled_payment_of_order(session, 1).id == first.id


def test_a_reservation_of_another_order_is_independent(session: Session):
    first, second = reserved(session, 1), reserved(session, 2)
    assert first.id != second.id
    assert (first.charged_order_id, second.charged_order_id) == (1, 2)


def test_a_failed_attempt_frees_the_order_for_another(session: Session):
    first = reserved(session)
    service.fail_payment(session, first.id, "x" * 300)
    second = reserved(session)
    assert second.id != first.id
    assert (first.status, first.charged_order_id) == (PaymentStatus.FAILED, None)
    assert first.failure_reason == "x" * 200
    assert (second.status, second.charged_order_id) == (PaymentStatus.PROCESSING, 1)
    assert payment_count(session) == 2


def test_a_reservation_stranded_longer_than_stranded_after_is_taken_over(session: Session):
    stranded = reserved(session)
    stranded.updated_at = utcnow() - service.STRANDED_AFTER - timedelta(seconds=1)
    session.flush()
    taken = service.reserve_payment(session, ALICE, order(), "tok_mastercard")
    assert taken.id == stranded.id
    session.refresh(taken)
    assert taken.status is PaymentStatus.PROCESSING
    assert taken.method == "tok_visa"  # retried as first asked, under the same payment
    assert taken.updated_at > utcnow() - timedelta(seconds=30)  # so no one else takes it
    assert payment_count(session) == 1


@pytest.mark.parametrize("age", [timedelta(0), service.STRANDED_AFTER - timedelta(seconds=10)])
def test_a_recent_reservation_is_not_taken_over(session: Session, age: timedelta):
    first = reserved(session)
    first.updated_at = utcnow() - age
    session.flush()
    with pytest.raises(OrderAlreadyPaid) as raised:
        reserved(session)
    assert raised.value.slug == "order_already_paid"
    assert payment_count(session) == 1


def test_a_succeeded_payment_is_never_taken_over_however_old(session: Session):
    payment = paid(session)
    payment.updated_at = utcnow() - service.STRANDED_AFTER - timedelta(hours=1)
    session.flush()
    with pytest.raises(OrderAlreadyPaid):
        reserved(session)
    session.refresh(payment)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment_count(session) == 1


def test_settling_records_the_charge_and_publishes_payment_succeeded_once(session: Session):
    payment = reserved(session, order_id=7)
    service.settle_payment(session, payment.id, "ch_123")
    session.flush()
    status, reference = session.execute(
        select(Payment.status, Payment.provider_reference).where(Payment.id == payment.id)
    ).one()
    assert (status, reference) == (PaymentStatus.SUCCEEDED, "ch_123")
    assert payment.charged_order_id == 7  # still holds the order's one charge
    assert events(session) == [("payment.succeeded", {"payment_id": payment.id, "order_id": 7})]


def test_the_settled_payment_of_an_order_is_the_one_holding_its_charge(session: Session):
    failed(session, 1)
    assert service.settled_payment_of_order(session, 1) is None
    succeeded = paid(session, 1)
    assert service.settled_payment_of_order(session, 1) is succeeded
    assert service.settled_payment_of_order(session, 2) is None


# --- seeing payments ---------------------------------------------------------------------


def test_a_payment_still_processing_is_not_found_even_by_its_payer(session: Session):
    payment = reserved(session)
    for caller in (ALICE, ADMIN):
        with pytest.raises(NotFound):
            service.visible_payment(session, caller, payment.id)


def test_only_the_payer_or_an_admin_sees_a_payment(session: Session):
    payment = paid(session)
    assert service.visible_payment(session, ALICE, payment.id) is payment
    assert service.visible_payment(session, ADMIN, payment.id) is payment
    with pytest.raises(Forbidden):
        service.visible_payment(session, BOB, payment.id)
    with pytest.raises(NotFound):
        service.visible_payment(session, ADMIN, payment.id + 1)


def test_a_read_of_a_payment_sees_it_as_stored_under_the_same_rules(session: Session):
    payment = paid(session)
    for caller in (ALICE, ADMIN):
        row = service.view_payment(session, caller, payment.id)
        assert (row.id, row.userid, row.status, row.amount_minor) == (
            payment.id,
            payment.userid,
            payment.status,
            payment.amount_minor,
        )
    with pytest.raises(Forbidden):
        service.view_payment(session, BOB, payment.id)
    with pytest.raises(NotFound):
        service.view_payment(session, ADMIN, payment.id + 1)
    processing = reserved(session, 2)
    with pytest.raises(NotFound):
        service.view_payment(session, ALICE, processing.id)


def test_a_failed_payment_stays_visible_to_its_payer(session: Session):
    payment = failed(session)
    assert service.visible_payment(session, ALICE, payment.id) is payment


def test_the_list_leaves_out_payments_still_processing(session: Session):
    failed_one = failed(session, 1)
    succeeded = paid(session, 2)
    reserved(session, 3)
    page = service.list_payments(session, ALICE, PaymentQuery())
    assert [payment.id for payment in page.items] == [succeeded.id, failed_one.id]
    assert page.next_cursor is None


def test_a_user_lists_only_their_own_payments_and_an_admin_everyones(session: Session):
    alices = paid(session, 1, ALICE)
    bobs = paid(session, 2, BOB)
    assert listed(session, ALICE) == [alices.id]
    assert listed(session, BOB) == [bobs.id]
    assert listed(session, ADMIN) == [bobs.id, alices.id]


def test_the_list_filters_by_order(session: Session):
    first = failed(session, 1)
    paid(session, 2)
    second = paid(session, 1)
    bobs = paid(session, 3, BOB)
    assert listed(session, ALICE, PaymentQuery(order_id=1)) == [second.id, first.id]
    assert listed(session, BOB, PaymentQuery(order_id=1)) == []
    assert listed(session, ADMIN, PaymentQuery(order_id=3)) == [bobs.id]


def test_list_pages_run_newest_first_and_follow_next_cursor(session: Session):
    ids = [paid(session, n).id for n in (1, 2, 3)]
    reserved(session, 4)  # processing: takes no place on a page
    ids += [paid(session, n).id for n in (5, 6)]
    newest_first = ids[::-1]
    first = service.list_payments(session, ALICE, PaymentQuery(limit=2))
    assert [payment.id for payment in first.items] == newest_first[:2]
    assert first.next_cursor is not None
    second = service.list_payments(session, ALICE, PaymentQuery(limit=2, cursor=first.next_cursor))
    assert [payment.id for payment in second.items] == newest_first[2:4]
    assert second.next_cursor is not None
    last = service.list_payments(session, ALICE, PaymentQuery(limit=2, cursor=second.next_cursor))
    assert [payment.id for payment in last.items] == newest_first[4:]
    assert last.next_cursor is None


# --- refunding ---------------------------------------------------------------------------


def test_a_refund_without_an_amount_takes_all_that_is_left(session: Session):
    payment = paid(session)
    assert service.reserve_refund(session, payment, None).amount_minor == 1000
    assert refunded_minor(session, payment.id) == 1000


def test_a_refund_without_an_amount_after_a_partial_one_takes_the_rest(session: Session):
    payment = paid(session)
    assert service.reserve_refund(session, payment, 600).amount_minor == 600
    assert service.reserve_refund(session, payment, None).amount_minor == 400
    assert refunded_minor(session, payment.id) == 1000


def test_a_refund_over_what_is_left_is_refused_and_counts_nothing(session: Session):
    payment = paid(session)
    service.reserve_refund(session, payment, 600)
    with pytest.raises(RefundExceedsPayment) as raised:
        service.reserve_refund(session, payment, 401)
    assert raised.value.slug == "refund_exceeds_payment"
    assert refunded_minor(session, payment.id) == 600
    assert service.reserve_refund(session, payment, 400).amount_minor == 400  # all that is left


@pytest.mark.parametrize("status", [PaymentStatus.PROCESSING, PaymentStatus.FAILED])
def test_a_payment_that_never_succeeded_cannot_be_refunded(session: Session, status):
    payment = reserved(session)
    if status is PaymentStatus.FAILED:
        service.fail_payment(session, payment.id, "card declined")
    with pytest.raises(PaymentNotRefundable) as raised:
        service.reserve_refund(session, payment, None)
    assert raised.value.slug == "payment_not_refundable"
    assert refunded_minor(session, payment.id) == 0


def test_a_payment_with_nothing_left_cannot_be_refunded(session: Session):
    payment = paid(session)
    service.record_refund(session, service.reserve_refund(session, payment, None).id, "r1")
    with pytest.raises(PaymentNotRefundable) as raised:
        service.reserve_refund(session, payment, None)
    assert raised.value.slug == "payment_not_refundable"
    assert raised.value.message == "nothing is left to refund"
    assert refunded_minor(session, payment.id) == 1000


def test_releasing_a_refund_gives_its_amount_back(session: Session):
    payment = paid(session)
    refund = service.reserve_refund(session, payment, 600)
    service.release_refund(session, refund.id)
    assert refunded_minor(session, payment.id) == 0
    assert refund.status is RefundStatus.FAILED  # kept, so the attempt shows
    service.release_refund(session, refund.id)  # once only
    assert refunded_minor(session, payment.id) == 0
    assert service.reserve_refund(session, payment, None).amount_minor == 1000


def test_a_counted_refund_is_a_pending_row_in_the_same_transaction(session: Session):
    """The count and the rows are one fact: a crash after the count leaves a row to
    finish, never a count that no refund explains."""
    payment = paid(session)
    refund = service.reserve_refund(session, payment, 600)
    assert (refund.amount_minor, refund.status, refund.provider_reference) == (
        600,
        RefundStatus.PENDING,
        None,
    )
    assert refund.reference.startswith(f"refund-{payment.id}-")
    assert service.refunds_under_way(session, payment.id)
    assert refunded_minor(session, payment.id) == sum(
        session.scalars(select(Refund.amount_minor).where(Refund.status != RefundStatus.FAILED))
    )


def test_recording_a_refund_twice_changes_nothing_the_second_time(session: Session):
    payment = paid(session)
    refund = service.reserve_refund(session, payment, None)
    service.record_refund(session, refund.id, "re_1")
    service.record_refund(session, refund.id, "re_2")  # a reconciler after a slow first try
    assert refund.provider_reference == "re_1"
    assert [topic for topic, _ in events(session)] == ["payment.succeeded", "payment.refunded"]


def test_a_payment_is_refunded_only_when_no_refund_of_it_is_under_way(session: Session):
    payment = paid(session)
    first = service.reserve_refund(session, payment, 400)
    rest = service.reserve_refund(session, payment, None)
    service.record_refund(session, rest.id, "re_rest")
    assert payment.status is PaymentStatus.PARTIALLY_REFUNDED  # 400 still under way
    service.record_refund(session, first.id, "re_first")
    assert payment.status is PaymentStatus.REFUNDED
    assert [topic for topic, _ in events(session)] == ["payment.succeeded", "payment.refunded"]


def test_refunding_the_rest_marks_the_payment_refunded_and_publishes_it(session: Session):
    payment = paid(session, order_id=7)
    refund = service.record_refund(
        session, service.reserve_refund(session, payment, None).id, "re_1"
    )
    assert (refund.payment_id, refund.amount_minor, refund.provider_reference) == (
        payment.id,
        1000,
        "re_1",
    )
    assert session.scalar(select(Payment.status).where(Payment.id == payment.id)) == (
        PaymentStatus.REFUNDED
    )
    assert events(session) == [
        ("payment.succeeded", {"payment_id": payment.id, "order_id": 7}),
        ("payment.refunded", {"payment_id": payment.id, "order_id": 7}),
    ]


def test_a_partial_refund_marks_the_payment_partially_refunded_and_publishes_nothing(
    session: Session,
):
    payment = paid(session)
    service.record_refund(session, service.reserve_refund(session, payment, 300).id, "r1")
    assert session.scalar(select(Payment.status).where(Payment.id == payment.id)) == (
        PaymentStatus.PARTIALLY_REFUNDED
    )
    assert refunded_minor(session, payment.id) == 300
    assert [topic for topic, _ in events(session)] == ["payment.succeeded"]


def test_partial_refunds_that_add_up_to_the_payment_end_it_refunded(session: Session):
    payment = paid(session)
    for amount, reference in ((300, "r1"), (None, "r2")):
        service.record_refund(
            session, service.reserve_refund(session, payment, amount).id, reference
        )
    refunds = session.execute(
        select(Refund.amount_minor, Refund.provider_reference).order_by(Refund.id)
    ).all()
    assert [tuple(row) for row in refunds] == [(300, "r1"), (700, "r2")]
    assert payment.status is PaymentStatus.REFUNDED
    assert [topic for topic, _ in events(session)] == ["payment.succeeded", "payment.refunded"]


# --- what a dead process left --------------------------------------------------------------


def aged(session: Session, row: Payment | Refund) -> None:
    row.updated_at = utcnow() - service.STRANDED_AFTER - timedelta(seconds=1)
    session.flush()


@pytest.mark.backends(ONLY_POSTGRES, ONLY_MYSQL)  # SQLite's one writer makes any second wait
def test_a_second_attempt_on_a_fresh_reservation_neither_waits_for_nor_deadlocks_its_settling(
    database: Database,
):
    """The first attempt settles under a row lock while a concurrent attempt finds the order
    reserved. The second must answer at once: on MariaDB, a take-over UPDATE that locked the
    status index, then waited for the row, deadlocked the settling (a charged payment's
    client got a 503)."""
    with database.unit_of_work() as session:
        payment_id = reserved(session).id
    answered = threading.Event()
    second: list[BaseException] = []

    def second_attempt() -> None:
        try:
            with database.unit_of_work() as session:
                reserved(session)
        except BaseException as error:
            second.append(error)
        answered.set()

    with database.unit_of_work() as settling:
        settling.get_one(Payment, payment_id, with_for_update=True)
        attempt = threading.Thread(target=second_attempt)
        attempt.start()
        assert answered.wait(10), "the second attempt waited for the settling's row lock"
        service.settle_payment(settling, payment_id, "ch_1")
    attempt.join(10)
    assert [type(error) for error in second] == [OrderAlreadyPaid]
    with database.unit_of_work(readonly=True) as session:
        assert session.get_one(Payment, payment_id).status is PaymentStatus.SUCCEEDED


def test_settling_a_payment_twice_changes_nothing_the_second_time(session: Session):
    payment = paid(session)
    service.settle_payment(session, payment.id, "ch_other")  # the reconciler, after a slow try
    service.fail_payment(session, payment.id, "never charged")
    assert (payment.status, payment.provider_reference) == (PaymentStatus.SUCCEEDED, "ch_1")
    assert [topic for topic, _ in events(session)] == ["payment.succeeded"]


def test_only_what_is_under_way_past_the_lease_is_stranded_and_taken_over_once(
    session: Session,
):
    recent = reserved(session, order_id=1)
    old = reserved(session, order_id=2)
    aged(session, old)
    aged(session, paid(session, order_id=3))  # settled: nothing to do
    refunded = paid(session, order_id=4)
    pending = service.reserve_refund(session, refunded, 300)
    done = service.reserve_refund(session, refunded, 300)
    service.record_refund(session, done.id, "re_1")
    for refund in (pending, done):
        aged(session, refund)

    assert service.stranded(session, Payment) == [old.id]
    assert service.stranded(session, Refund) == [pending.id]
    assert not service.take_over(session, Payment, recent.id)  # it may still be charging
    assert service.take_over(session, Payment, old.id)
    assert not service.take_over(session, Payment, old.id)  # leased to the first taker
    assert service.take_over(session, Refund, pending.id)
    assert service.stranded(session, Payment) == service.stranded(session, Refund) == []
