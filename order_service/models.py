"""The order service's tables, in its own database."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Index, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.kit.database import NAMING_CONVENTION, UTCDateTime, status_type, utcnow
from app.kit.deny_list import DenyList
from app.kit.events import Outbox


class Base(DeclarativeBase):
    """Tables of the order service."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


outbox = Outbox(Base.metadata)
deny_list = DenyList(Base.metadata)


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Order(Base):
    """An order; money in minor units (cents). Rows are never deleted: cancelling marks."""

    __tablename__ = "orders"
    __table_args__ = (
        Index(None, "userid", "id"),  # a user's list, newest first
        Index(None, "userid", "status", "id"),  # ... by status
        Index(None, "status", "id"),  # an admin's list by status
        CheckConstraint("quantity BETWEEN 1 AND 1000", name="quantity"),
        CheckConstraint("price_minor > 0", name="price"),
        CheckConstraint("amount_minor = price_minor * quantity", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    userid: Mapped[int] = mapped_column(BigInteger)
    product: Mapped[str] = mapped_column(String(200))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[OrderStatus] = mapped_column(
        status_type(OrderStatus, length=16), default=OrderStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
