"""The benchmark's seed writes rows the migrated schema takes: a model change that the
seed does not follow fails here, not in the middle of ``make bench``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import MetaData, text
from support import SECRET, database_urls

from app.kit.database import Database
from app.runtime.cli import main
from bench.seed import seed


def test_the_seed_fills_freshly_migrated_databases(backend: str, tmp_path: Path):
    urls = database_urls(backend, tmp_path)
    environment = {
        "MICROSHOP_ENV": "production",
        "MICROSHOP_JWT_SECRET": SECRET,
        "MICROSHOP_INSTANCE_DIR": str(tmp_path),
        "MICROSHOP_SERVICES": None,
        **{f"MICROSHOP_{name.upper()}_DATABASE_URL": url for name, url in urls.items()},
    }
    assert CliRunner().invoke(main, ["migrate"], env=environment).exit_code == 0
    counts = seed(urls, users=3, orders=200)
    database = Database.connect(urls["payment"], MetaData())
    try:
        with database.unit_of_work(readonly=True) as session:
            payments = session.scalar(text("SELECT count(*) FROM payments"))
            refunds = session.scalar(text("SELECT count(*) FROM refunds"))
    finally:
        database.dispose()
    assert (counts.users, counts.orders, counts.payments) == (3, 200, payments)
    assert 0 < refunds < payments
