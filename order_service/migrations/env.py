"""Alembic's entry point for the order service's migrations: see app.runtime.migrations."""

from app.runtime.migrations import run_env
from order_service.models import Base

run_env(Base.metadata)
