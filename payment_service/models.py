"""The payment service's tables, in its own database."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Tables of the payment service."""
