"""Alembic's entry point for the payment service's migrations: see app.runtime.migrations."""

from app.runtime.migrations import run_env
from payment_service.models import Base

run_env(Base.metadata)
