"""The payment service's rules: each step of paying and refunding. No Flask, no commit.

Paying and refunding both call a provider, which no database transaction should wait
on, so each is three short units of work, run by ``checkout``: reserve (a constraint
makes the reservation exclusive), call the provider, then settle or release.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.auth import Caller
from app.kit.database import utcnow
from app.kit.errors import Forbidden, NotFound
from app.kit.pagination import Page, keyset_page
from payment_service.errors import (
    OrderAlreadyPaid,
    OrderNotPayable,
    PaymentNotRefundable,
    RefundExceedsPayment,
)
from payment_service.models import Payment, PaymentStatus, Refund, outbox
from payment_service.orders import OrderFacts
from payment_service.schemas import PaymentQuery

SETTLED = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
STRANDED_AFTER = timedelta(minutes=2)
"""Far longer than a charge takes: a reservation older than this lost its process."""


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
    under the same payment (the provider's key is ``payment-<id>``), so a provider that
    did charge answers with that charge instead of charging again."""
    payment = settled_payment_of_order(session, order_id)
    if payment is None or payment.status is not PaymentStatus.PROCESSING:
        return None
    now = utcnow()
    taken = session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .where(Payment.status == PaymentStatus.PROCESSING)
        .where(Payment.updated_at < now - STRANDED_AFTER)
        .values(updated_at=now)
    )
    return payment if taken.rowcount == 1 else None


def settle_payment(session: Session, payment_id: int, charge_reference: str) -> Payment:
    payment = session.get_one(Payment, payment_id)
    payment.status = PaymentStatus.SUCCEEDED
    payment.provider_reference = charge_reference
    payment.updated_at = utcnow()
    outbox.publish(
        session, "payment.succeeded", {"payment_id": payment.id, "order_id": payment.order_id}
    )
    return payment


def fail_payment(session: Session, payment_id: int, reason: str) -> Payment:
    """Record the failed attempt and free the order for another one."""
    payment = session.get_one(Payment, payment_id)
    payment.status = PaymentStatus.FAILED
    payment.charged_order_id = None
    payment.failure_reason = reason[:200]
    payment.updated_at = utcnow()
    return payment


def visible_payment(session: Session, caller: Caller, payment_id: int) -> Payment:
    """A payment, for its payer or an admin (403 otherwise, 404 if none)."""
    payment = session.get(Payment, payment_id)
    if payment is None or payment.status is PaymentStatus.PROCESSING:
        raise NotFound("payment")
    if payment.userid != caller.id and not caller.is_admin:
        raise Forbidden("this payment is not yours")
    return payment


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


def reserve_refund(session: Session, payment: Payment, amount_minor: int | None) -> int:
    """Count ``amount_minor`` (default: all that is left) as refunded; returns the amount.

    A conditional UPDATE, so concurrent refunds can never exceed the payment."""
    if payment.status not in SETTLED:
        raise PaymentNotRefundable(f"a {payment.status.value} payment cannot be refunded")
    amount = payment.remaining_minor if amount_minor is None else amount_minor
    if amount == 0:
        raise PaymentNotRefundable("nothing is left to refund")
    counted = session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .where(Payment.refunded_minor + amount <= Payment.amount_minor)
        .values(refunded_minor=Payment.refunded_minor + amount, updated_at=utcnow())
    )
    if counted.rowcount != 1:
        raise RefundExceedsPayment()
    return amount


def release_refund(session: Session, payment_id: int, amount_minor: int) -> None:
    """The provider refused the refund: it no longer counts."""
    session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(refunded_minor=Payment.refunded_minor - amount_minor, updated_at=utcnow())
    )


def record_refund(session: Session, payment_id: int, amount_minor: int, reference: str) -> Refund:
    """The refund is done: record it, and tell the order service when nothing is left."""
    payment = session.get_one(Payment, payment_id)
    session.refresh(payment)  # reserve_refund's UPDATE may have run in this same session
    refund = Refund(
        payment_id=payment.id,
        amount_minor=amount_minor,
        provider_reference=reference,
        created_at=utcnow(),
    )
    session.add(refund)
    if payment.remaining_minor == 0:
        payment.status = PaymentStatus.REFUNDED
        outbox.publish(
            session, "payment.refunded", {"payment_id": payment.id, "order_id": payment.order_id}
        )
    else:
        payment.status = PaymentStatus.PARTIALLY_REFUNDED
    session.flush()
    return refund


def settled_payment_of_order(session: Session, order_id: int) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.charged_order_id == order_id))
