"""Alembic migrations: one history per service, run by ``microshop migrate``, in step with
the models on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, inspect, text
from support import (
    DATABASE_BACKENDS,
    ONLY_MYSQL,
    SECRET,
    SERVICES,
    database_urls,
    make_settings,
    scratch_databases,
)
from werkzeug.test import Client

from app.kit.database import Database, UTCDateTime
from app.kit.service import parts_of
from app.runtime.cli import main
from app.runtime.composition import create_application
from app.runtime.migrations import (
    current,
    differences,
    downgrade,
    heads,
    migrations_package,
    upgrade,
    version_table,
)

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

HEADS = {"user": "0004", "order": "0005", "payment": "0005"}
"""The revision each service's history ends at."""


def metadata_of(service: str) -> MetaData:
    return importlib.import_module(f"{service}_service.models").Base.metadata


def tables_in(url: str) -> set[str]:
    database = Database.connect(url, MetaData())
    try:
        with database.engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        database.dispose()


@pytest.fixture
def urls(backend: str, tmp_path: Path) -> dict[str, str]:
    """An empty database per service on the backend under test."""
    return database_urls(backend, tmp_path)


@pytest.fixture
def run(urls: dict[str, str], tmp_path: Path):
    environment = {
        "MICROSHOP_ENV": "production",
        "MICROSHOP_JWT_SECRET": SECRET,
        "MICROSHOP_INSTANCE_DIR": str(tmp_path),
        "MICROSHOP_SERVICES": None,
        **{f"MICROSHOP_{name.upper()}_DATABASE_URL": url for name, url in urls.items()},
    }

    def run(*args: str, **env: str):
        return CliRunner().invoke(main, list(args), env={**environment, **env})

    return run


@pytest.fixture
def service_database(urls: dict[str, str]) -> Iterator[Callable[[str], Database]]:
    """A service's empty database, by service, with its models' metadata."""
    opened: list[Database] = []

    def open_(service: str) -> Database:
        database = Database.connect(urls[service], metadata_of(service))
        opened.append(database)
        return database

    yield open_
    for database in opened:
        database.dispose()


def test_migrate_builds_every_schema_from_empty_and_is_repeatable(run, urls, tmp_path):
    first = run("migrate")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        f"{name}: schema ready (revision {HEADS[name]})" for name in SERVICES
    ]
    for name, url in urls.items():
        assert set(metadata_of(name).tables) | {version_table(name)} == tables_in(url)

    again = run("migrate")
    assert again.exit_code == 0, again.output
    assert again.output == first.output

    application = create_application(make_settings(tmp_path, urls))
    try:
        reply = Client(application).get("/readyz")
        assert reply.status_code == 200, reply.get_data(as_text=True)
    finally:
        application.dispose()


def test_migrate_one_service_leaves_the_others_alone(run, urls):
    result = run("migrate", "--service", "order")
    assert result.exit_code == 0, result.output
    assert result.output == f"order: schema ready (revision {HEADS['order']})\n"
    assert "orders" in tables_in(urls["order"])
    assert tables_in(urls["user"]) == set()
    assert tables_in(urls["payment"]) == set()


def test_migrate_refuses_a_service_that_is_not_mounted(run, urls):
    result = run("migrate", "--service", "shipping")
    assert result.exit_code == 2
    assert "no service 'shipping' is mounted here (mounted: user, order, payment)" in result.output
    assert "Traceback" not in result.output
    assert all(tables_in(url) == set() for url in urls.values())


def test_init_db_is_migrate(run, urls):
    result = run("init-db")
    assert result.exit_code == 0, result.output
    assert f"user: schema ready (revision {HEADS['user']})" in result.output
    assert version_table("user") in tables_in(urls["user"])


def test_a_service_without_migrations_gets_its_tables_created(run):
    result = run("migrate", MICROSHOP_SERVICES="user,reviews=acme_reviews:create_app")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"user: schema ready (revision {HEADS['user']})",
        "reviews: schema ready (no migrations; missing tables created)",
    ]


def test_migrations_are_found_by_the_package_of_the_app():
    assert migrations_package("order_service") == "order_service"
    assert migrations_package("order_service.models") == "order_service"
    assert migrations_package("acme_reviews") is None  # a module, no package
    assert migrations_package("app") is None  # a package without migrations/
    assert migrations_package("not_imported_anywhere") is None


@pytest.mark.parametrize("service", SERVICES)
def test_the_migrations_and_the_models_agree(service_database, service: str):
    """Autogenerate finds nothing to change once the history has run: the models hold no
    change that lacks a migration, and the migrations no change the models lack."""
    database = service_database(service)
    upgrade(database, service, f"{service}_service")
    assert current(database, service) == heads(service, f"{service}_service")
    assert differences(database, service) == []


@pytest.mark.parametrize("service", SERVICES)
def test_the_migrations_make_the_check_constraints_of_the_models(
    backend: str, urls, service_database, tmp_path: Path, service: str
):
    """Autogenerate does not compare CHECK constraints: compare them with the ones that
    ``create_schema`` makes from the models, on the same backend."""
    migrated = service_database(service)
    upgrade(migrated, service, f"{service}_service")
    with scratch_databases(backend, tmp_path) as url_of:
        reference = Database.connect(url_of(f"{service}_reference"), metadata_of(service))
        reference.create_schema()

        def checks(database: Database) -> dict[str, set[tuple[str, str]]]:
            with database.engine.connect() as connection:
                inspector = inspect(connection)
                return {
                    table: {
                        (check["name"], check["sqltext"])
                        for check in inspector.get_check_constraints(table)
                    }
                    for table in metadata_of(service).tables
                }

        assert checks(migrated) == checks(reference)
        reference.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_the_history_goes_down_to_empty_and_up_again(service_database, service: str):
    database = service_database(service)
    package = f"{service}_service"
    upgrade(database, service, package)
    downgrade(database, service, package, "base")
    with database.engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == {version_table(service)}
    assert current(database, service) == ()
    upgrade(database, service, package)
    assert differences(database, service) == []


def test_a_database_made_before_migrations_is_adopted(run, urls, service_database):
    """Tables made by ``create_schema`` (the old ``init-db``, whose tables are the first
    revision's) with no version table: the database is stamped at the first revision,
    then upgraded, instead of failing."""
    old = service_database("user")
    upgrade(old, "user", "user_service", "0001")
    with old.engine.begin() as connection:  # as if made before migrations existed
        connection.exec_driver_sql(f"DROP TABLE {version_table('user')}")
    result = run("migrate", "--service", "user")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"user: schema ready (revision {HEADS['user']}; existing tables adopted)\n"
    )
    assert current(service_database("user"), "user") == (HEADS["user"],)
    assert differences(service_database("user"), "user") == []


def test_production_start_up_leaves_the_schema_alone(urls, tmp_path: Path):
    application = create_application(make_settings(tmp_path, urls))
    try:
        reply = Client(application).get("/readyz")
        assert reply.status_code == 503
        assert reply.get_json()["data"]["services"] == dict.fromkeys(SERVICES, "schema_missing")
    finally:
        application.dispose()
    assert all(tables_in(url) == set() for url in urls.values())


def test_development_start_up_migrates_to_head(run, urls, tmp_path: Path):
    application = create_application(make_settings(tmp_path, urls, env="development"))
    try:
        assert Client(application).get("/readyz").status_code == 200
        for name in SERVICES:
            database = parts_of(application.services[name]).database
            assert current(database, name) == heads(name, f"{name}_service")
            assert differences(database, name) == []
    finally:
        application.dispose()
    result = run("migrate")  # the operator's command finds nothing left to do
    assert result.exit_code == 0, result.output
    assert "adopted" not in result.output


@pytest.mark.parametrize(("service", "before"), [("order", "0002"), ("payment", "0001")])
def test_deny_list_entries_made_before_their_times_were_kept_get_one(
    service_database, service: str, before: str
):
    database = service_database(service)
    package = f"{service}_service"
    upgrade(database, service, package, before)
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO denied_tokens (jti, expires_at) VALUES ('old', '2999-01-01 00:00:00')"
        )
        connection.exec_driver_sql("INSERT INTO token_versions (user_id, version) VALUES (7, 2)")
    upgrade(database, service, package)
    with database.unit_of_work(readonly=True) as session:
        [(jti, denied_at)] = session.execute(text("SELECT jti, denied_at FROM denied_tokens"))
        [(version, changed_at)] = session.execute(
            text("SELECT version, changed_at FROM token_versions")
        )
    assert (jti, version) == ("old", 2)
    assert denied_at is not None
    assert changed_at is not None
    assert differences(database, service) == []


def test_refunds_made_before_refunds_were_rows_first_stay_succeeded_and_counted(
    service_database,
):
    database = service_database("payment")
    upgrade(database, "payment", "payment_service", "0002")
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO payments (id, order_id, userid, amount_minor, currency, status,"
            " refunded_minor, method, charged_order_id, provider_reference, created_at,"
            " updated_at) VALUES (1, 5, 7, 1000, 'USD', 'partially_refunded', 300,"
            " 'tok_visa', 5, 'ch_1', '2026-11-30 10:00:00', '2026-11-30 10:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO refunds (id, payment_id, amount_minor, provider_reference, created_at)"
            " VALUES (1, 1, 300, 're_1', '2026-11-30 11:00:00')"
        )
    upgrade(database, "payment", "payment_service")
    assert differences(database, "payment") == []
    with database.unit_of_work() as session:
        [row] = session.execute(
            text("SELECT status, reference, provider_reference, updated_at FROM refunds")
        )
        assert tuple(row[:3]) == ("succeeded", "before-0003-1", "re_1")
        assert str(row[3]).startswith("2026-11-30 11:00:00")
        session.execute(  # a refund under way when the database is taken back down
            text(
                "INSERT INTO refunds (id, payment_id, amount_minor, status, reference,"
                " created_at, updated_at) VALUES (2, 1, 700, 'pending', 'refund-1-x',"
                " '2026-12-01 09:00:00', '2026-12-01 09:00:00')"
            )
        )
        session.execute(text("UPDATE payments SET refunded_minor = 1000"))
    downgrade(database, "payment", "payment_service", "0002")
    with database.unit_of_work(readonly=True) as session:
        refunds = session.execute(text("SELECT id, provider_reference FROM refunds ORDER BY id"))
        assert [tuple(row) for row in refunds] == [(1, "re_1"), (2, "refund-1-x")]
        assert session.scalar(text("SELECT refunded_minor FROM payments")) == 1000


@pytest.mark.parametrize("backend", [ONLY_MYSQL])
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_on_mariadb_keep_microseconds_and_compare_strings_exactly(
    service_database, service: str
):
    """Autogenerate sees neither: ``DATETIME`` would drop the fraction and the server's
    default collation would ignore case, so check the columns themselves."""
    database = service_database(service)
    upgrade(database, service, f"{service}_service")
    with database.engine.connect() as connection:
        columns = connection.execute(
            text(
                "SELECT table_name, column_name, column_type, collation_name"
                " FROM information_schema.columns WHERE table_schema = DATABASE()"
                " AND table_name NOT LIKE 'alembic_version%'"
            )
        ).all()
    timestamps = {
        (table.name, column.name)
        for table in metadata_of(service).tables.values()
        for column in table.columns
        if isinstance(column.type, UTCDateTime)
    }
    assert {(table, column) for table, column, kind, _ in columns if kind == "datetime(6)"} == (
        timestamps
    )
    assert not [column for _, column, kind, _ in columns if kind == "datetime"]
    collations = {collation for *_, collation in columns if collation}
    assert collations == {"utf8mb4_nopad_bin"}
