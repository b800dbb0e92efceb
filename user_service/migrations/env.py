"""Alembic's entry point for the user service's migrations: see app.runtime.migrations."""

from app.runtime.migrations import run_env
from user_service.models import Base

run_env(Base.metadata)
