"""The user service's tables, in its own database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.kit.database import NAMING_CONVENTION, UTCDateTime, utcnow
from app.kit.deny_list import DenyList
from app.kit.events import Outbox


class Base(DeclarativeBase):
    """Tables of the user service."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


outbox = Outbox(Base.metadata)
deny_list = DenyList(Base.metadata)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    username_key: Mapped[str] = mapped_column(String(32), unique=True)
    """The username lower-cased: uniqueness is case-insensitive on every database."""
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    token_version: Mapped[int] = mapped_column(default=0)
    """Carried in every token as ``ver``; a password change bumps it, retiring older tokens."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
