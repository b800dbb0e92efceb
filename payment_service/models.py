"""The payment service's tables, in its own database."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.kit.database import NAMING_CONVENTION, UTCDateTime, status_type, utcnow
from app.kit.deny_list import DenyList
from app.kit.events import Outbox


class Base(DeclarativeBase):
    """Tables of the payment service."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


outbox = Outbox(Base.metadata)
deny_list = DenyList(Base.metadata)


class PaymentStatus(StrEnum):
    PROCESSING = "processing"
    """Internal: reserved and being charged; never shown to clients."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class Payment(Base):
    """A charge of an order's amount; failed attempts are kept too."""

    __tablename__ = "payments"
    __table_args__ = (
        Index(None, "userid", "id"),
        Index(None, "order_id", "id"),
        Index(None, "status", "updated_at"),
        CheckConstraint("refunded_minor BETWEEN 0 AND amount_minor", name="refunded"),
        CheckConstraint("amount_minor > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    userid: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PaymentStatus] = mapped_column(status_type(PaymentStatus, length=24))
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    method: Mapped[str] = mapped_column(String(64))
    charged_order_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    """The order id while this payment holds or has taken the order's one charge, else
    NULL: the unique index lets at most one payment per order succeed, whatever races."""
    provider_reference: Mapped[str | None] = mapped_column(String(128))
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def remaining_minor(self) -> int:
        return self.amount_minor - self.refunded_minor


class RefundStatus(StrEnum):
    PENDING = "pending"
    """Counted in the payment's ``refunded_minor`` and being made at the provider."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The provider refused it: it no longer counts."""


class Refund(Base):
    """A refund of part of a payment. It is written, ``pending``, in the same transaction
    that counts it in ``Payment.refunded_minor``, so the count and the rows never differ:
    a pending refund whose process died is finished later under its own ``reference``."""

    __tablename__ = "refunds"
    __table_args__ = (Index(None, "status", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RefundStatus] = mapped_column(status_type(RefundStatus, length=16))
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    """The provider's idempotency key for this refund: a retry refunds once."""
    provider_reference: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(Base):
    """One caller's ``Idempotency-Key``: the request it stood for, and the answer given."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("userid", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    userid: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    """None while the first request runs."""
    response_body: Mapped[str | None] = mapped_column(Text)
    made_id: Mapped[int | None]
    """The payment or refund the first request made, written with it: a retry after that
    request died answers with it instead of starting over."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
