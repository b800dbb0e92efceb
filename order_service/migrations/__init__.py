"""The order service's schema history (Alembic); run by `microshop migrate`."""
