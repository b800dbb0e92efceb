"""The payment service's rules: each step of paying and refunding. No Flask, no commit.

Paying and refunding both call a provider, which no database transaction should wait
on, so each is three short units of work, run by ``checkout``: reserve (a constraint
makes the reservation exclusive), call the provider, then settle or release.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.auth import Caller
from app.kit.database import read_row, utcnow
from app.kit.errors import Forbidden, NotFound
from app.kit.pagination import Page, keyset_page
from app.kit.topics import PaymentRefunded, PaymentSucceeded
from payment_service.errors import (
    OrderAlreadyPaid,
    OrderNotPayable,
    PaymentNotRefundable,
    RefundExceedsPayment,
)
from payment_service.models import Payment, PaymentStatus, Refund, RefundStatus, outbox
from payment_service.orders import OrderFacts
from payment_service.schemas import PaymentQuery

SETTLED = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
STRANDED_AFTER = timedelta(minutes=2)
"""Far longer than a charge or a refund takes: one still under way after this lost its
process, and is taken over (by the next attempt to pay, or by the reconciler)."""
RECONCILED_AT_ONCE = 20
"""Stranded payments or refunds the reconciler takes per round: few, so it finishes them
well within the lease it takes on them."""


def charge_key(payment_id: int) -> str:
    """The provider's idempotency key for a payment's charge: a retry charges once."""
    return f"payment-{payment_id}"


def check_payable(order: OrderFacts | None, caller: Caller) -> OrderFacts:
    """The order may be paid by this caller now, or the reason it may not."""
    if order is None:
        raise NotFound("order")
    if order.userid != caller.id:
        raise Forbidden("only the order's owner may pay it")
    if order.status in ("paid", "refunded"):
        raise OrderAlreadyPaid()
    if order.status != "pending":
        raise OrderNotPayable(f"order is {order.status}")
    return order


def reserve_payment(session: Session, caller: Caller, order: OrderFacts, method: str) -> Payment:
    """A ``processing`` payment holding the order's one charge; a second one is refused."""
    payment = Payment(
        order_id=order.id,
        userid=caller.id,
        amount_minor=order.amount_minor,
        currency=order.currency,
        status=PaymentStatus.PROCESSING,
        refunded_minor=0,
        method=method,
        charged_order_id=order.id,
    )
    try:
        with session.begin_nested():
            session.add(payment)
    except IntegrityError:
        stranded = _take_over_stranded(session, order.id)
        if stranded is None:
            raise OrderAlreadyPaid("order is already paid or being paid") from None
        return stranded
    return payment


def _take_over_stranded(session: Session, order_id: int) -> Payment | None:
    """A reservation left ``processing`` for longer than any charge takes: its process
    died between reserving and recording the provider's answer. The charge is retried
    under the same payment (its ``charge_key``), so a provider that did charge answers
    with that charge instead of charging again."""
    payment = settled_payment_of_order(session, order_id)
    if payment is None or payment.status is not PaymentStatus.PROCESSING:
        return None
    return payment if take_over(session, Payment, payment.id) else None


UNDER_WAY = {Payment: PaymentStatus.PROCESSING, Refund: RefundStatus.PENDING}
"""The status of a payment or refund whose provider call has not been answered yet."""


def take_over(session: Session, model: type[Payment] | type[Refund], row_id: int) -> bool:
    """Lease a payment or refund left under way past ``STRANDED_AFTER`` for another such
    span: its process died, and the caller finishes it. One taker wins.

    A row still under way is let be without asking for its lock: on MariaDB the UPDATE
    locks the status index, then waits for the row, which its own process holds while
    it settles and updates that index (a deadlock; a charged payment's client got a 503)."""
    now = utcnow()
    row = session.get(model, row_id)
    if row is None or row.status is not UNDER_WAY[model] or row.updated_at >= now - STRANDED_AFTER:
        return False
    taken = session.execute(
        update(model)
        .where(model.id == row_id)
        .where(model.status == UNDER_WAY[model])
        .where(model.updated_at < now - STRANDED_AFTER)
        .values(updated_at=now)
    )
    return taken.rowcount == 1


def stranded(session: Session, model: type[Payment] | type[Refund]) -> list[int]:
    """Ids of the oldest payments or refunds left under way past ``STRANDED_AFTER``: their
    processes died, if nobody has taken them over (``take_over``) since."""
    return list(
        session.scalars(
            select(model.id)
            .where(model.status == UNDER_WAY[model])
            .where(model.updated_at < utcnow() - STRANDED_AFTER)
            .order_by(model.updated_at)
            .limit(RECONCILED_AT_ONCE)
        )
    )


def settle_payment(session: Session, payment_id: int, charge_reference: str) -> Payment:
    """The provider charged: the payment succeeded. Settling it twice (the reconciler and a
    slow first attempt) changes nothing the second time."""
    payment = session.get_one(Payment, payment_id, with_for_update=True)
    if payment.status is not PaymentStatus.PROCESSING:
        return payment
    payment.status = PaymentStatus.SUCCEEDED
    payment.provider_reference = charge_reference
    payment.updated_at = utcnow()
    outbox.publish(session, PaymentSucceeded(payment_id=payment.id, order_id=payment.order_id))
    return payment


def fail_payment(session: Session, payment_id: int, reason: str) -> Payment:
    """Record the failed attempt and free the order for another one."""
    payment = session.get_one(Payment, payment_id, with_for_update=True)
    if payment.status is not PaymentStatus.PROCESSING:
        return payment
    payment.status = PaymentStatus.FAILED
    payment.charged_order_id = None
    payment.failure_reason = reason[:200]
    payment.updated_at = utcnow()
    return payment


def visible_payment(session: Session, caller: Caller, payment_id: int) -> Payment:
    """A payment, for its payer or an admin (403 otherwise, 404 if none)."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound("payment")
    _check_visible(payment, caller)
    return payment


def view_payment(session: Session, caller: Caller, payment_id: int) -> Row[Any]:
    """``visible_payment`` for a read: the payment as stored (``read_row``)."""
    payment = read_row(session, Payment, payment_id)
    if payment is None:
        raise NotFound("payment")
    _check_visible(payment, caller)
    return payment


def _check_visible(payment: Payment | Row[Any], caller: Caller) -> None:
    """404 for a payment still being charged; 403 for another's, unless an admin."""
    if payment.status is PaymentStatus.PROCESSING:
        raise NotFound("payment")
    if payment.userid != caller.id and not caller.is_admin:
        raise Forbidden("this payment is not yours")


def list_payments(session: Session, caller: Caller, query: PaymentQuery) -> Page[Payment]:
    """The caller's payments (an admin's: everyone's), newest first, one keyset page."""
    statement = (
        select(Payment)
        .where(Payment.status != PaymentStatus.PROCESSING)
        .order_by(Payment.id.desc())
    )
    if not caller.is_admin:
        statement = statement.where(Payment.userid == caller.id)
    if query.order_id is not None:
        statement = statement.where(Payment.order_id == query.order_id)
    return keyset_page(session, statement, Payment.id, after=query.cursor, limit=query.limit)


def reserve_refund(session: Session, payment: Payment, amount_minor: int | None) -> Refund:
    """Count ``amount_minor`` (default: all that is left) as refunded, and write it as a
    ``pending`` refund in the same transaction: the count and the rows are one fact.

    A conditional UPDATE, so concurrent refunds can never exceed the payment."""
    if payment.status not in SETTLED:
        raise PaymentNotRefundable(f"a {payment.status.value} payment cannot be refunded")
    amount = payment.remaining_minor if amount_minor is None else amount_minor
    if amount <= 0:
        raise PaymentNotRefundable("nothing is left to refund")
    now = utcnow()
    counted = session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .where(Payment.refunded_minor + amount <= Payment.amount_minor)
        .values(refunded_minor=Payment.refunded_minor + amount, updated_at=now)
    )
    if counted.rowcount != 1:
        raise RefundExceedsPayment()
    refund = Refund(
        payment_id=payment.id,
        amount_minor=amount,
        status=RefundStatus.PENDING,
        reference=f"refund-{payment.id}-{uuid.uuid4().hex}",
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    session.flush()
    return refund


def release_refund(session: Session, refund_id: int) -> None:
    """The provider refused the refund: it failed, and no longer counts."""
    refund = session.get_one(Refund, refund_id)
    if _finish_refund(session, refund, RefundStatus.FAILED):
        session.execute(
            update(Payment)
            .where(Payment.id == refund.payment_id)
            .values(
                refunded_minor=Payment.refunded_minor - refund.amount_minor, updated_at=utcnow()
            )
        )


def record_refund(session: Session, refund_id: int, provider_reference: str) -> Refund:
    """The provider made the refund: it succeeded, and the payment is ``refunded`` (and the
    order service told) once nothing is left and no other refund is under way. Recording
    it twice (the reconciler and a slow first attempt) changes nothing the second time."""
    refund = session.get_one(Refund, refund_id)
    payment = session.get_one(Payment, refund.payment_id, with_for_update=True)
    if not _finish_refund(session, refund, RefundStatus.SUCCEEDED, provider_reference):
        return refund
    session.refresh(payment)  # reserve_refund's UPDATE may have run in this same session
    if payment.remaining_minor == 0 and not refunds_under_way(session, payment.id):
        payment.status = PaymentStatus.REFUNDED
        outbox.publish(session, PaymentRefunded(payment_id=payment.id, order_id=payment.order_id))
    elif payment.status is not PaymentStatus.REFUNDED:
        payment.status = PaymentStatus.PARTIALLY_REFUNDED
    payment.updated_at = utcnow()
    session.flush()
    return refund


def _finish_refund(
    session: Session, refund: Refund, status: RefundStatus, provider_reference: str | None = None
) -> bool:
    """Move a pending refund to ``status``; False if it was no longer pending."""
    finished = session.execute(
        update(Refund)
        .where(Refund.id == refund.id, Refund.status == RefundStatus.PENDING)
        .values(status=status, provider_reference=provider_reference, updated_at=utcnow())
    )
    session.refresh(refund)
    return finished.rowcount == 1


def refunds_under_way(session: Session, payment_id: int) -> bool:
    """Whether a refund of the payment is counted but not yet answered by the provider."""
    pending = (
        select(Refund.id)
        .where(Refund.payment_id == payment_id, Refund.status == RefundStatus.PENDING)
        .exists()
    )
    return bool(session.scalar(select(pending)))


def settled_payment_of_order(session: Session, order_id: int) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.charged_order_id == order_id))
