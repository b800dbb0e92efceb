"""Each service's schema, changed only by Alembic migrations: one history per service.

A service keeps its history in its own package, ``<package>/migrations/`` (``env.py``,
``script.py.mako``, ``versions/``), and its database records the revision it is at in
its own version table, ``alembic_version_<service>``. Alembic is configured here, in
code (there is no ``alembic.ini``), and a service's ``env.py`` is one call::

    # order_service/migrations/env.py
    from app.runtime.migrations import run_env
    from order_service.models import Base

    run_env(Base.metadata)

The platform never imports a service: it finds the history by the package name of the
service's Flask app (``app.import_name``) at run time::

    prepare_schema(database, "order", "order_service")   # microshop migrate, dev start-up
    upgrade(database, "order", "order_service")          # to head
    differences(database, "order")                       # models vs database: [] when in step

The next revision of a history is written by autogenerate, against a database at head::

    database = Database.connect("sqlite:////tmp/order.db", Base.metadata)
    upgrade(database, "order", "order_service")
    revision(database, "order", "order_service", "add orders.note")

then review the file it wrote under ``order_service/migrations/versions/`` and run
``ruff format`` on it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, Literal

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, TypeDecorator, inspect, text

from app.kit.database import Database, UTCDateTime

FOLDER = "migrations"


class MigrationError(RuntimeError):
    """A schema that cannot be migrated as it stands."""


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def migrations_package(import_name: str) -> str | None:
    """The package whose ``migrations/`` holds the history of the app named ``import_name``.

    ``import_name`` is a Flask app's: a service package (``order_service``) or a module in
    one (``acme.reviews.app`` looks in ``acme.reviews``). None when there is no history: a
    single-module service, or a package without ``migrations/env.py``."""
    module = sys.modules.get(import_name)
    if module is None:
        return None
    package = import_name if hasattr(module, "__path__") else (module.__package__ or "")
    if not package:
        return None
    try:
        env = resources.files(package).joinpath(FOLDER, "env.py")
    except (ModuleNotFoundError, TypeError):
        return None
    return package if env.is_file() else None


def alembic_config(service: str, package: str) -> Config:
    """Alembic's configuration for a service's history, in ``<package>/migrations``."""
    config = Config()
    config.set_main_option("script_location", f"{package}:{FOLDER}")
    config.set_main_option("path_separator", "os")
    config.attributes["service"] = service
    config.attributes["version_table"] = version_table(service)
    return config


def heads(service: str, package: str) -> tuple[str, ...]:
    """The head revision(s) of the service's history."""
    return tuple(ScriptDirectory.from_config(alembic_config(service, package)).get_heads())


def _revisions(connection: Connection, service: str) -> tuple[str, ...]:
    migration = MigrationContext.configure(
        connection, opts={"version_table": version_table(service)}
    )
    return migration.get_current_heads()


def current(database: Database, service: str) -> tuple[str, ...]:
    """The revision(s) the database is at; empty when it was never migrated."""
    with database.engine.connect() as connection:
        return _revisions(connection, service)


@contextmanager
def _migrating(database: Database, service: str) -> Iterator[Connection]:
    """One connection, one transaction, and no other migration of this service at once.

    SQLite: writers queue on ``BEGIN IMMEDIATE`` (see app.kit.database); foreign keys are off
    while a migration runs, since batch operations copy and drop tables, and are checked
    before commit. PostgreSQL: an advisory lock keeps two processes from migrating one
    database together."""
    with database.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # a pragma that only takes effect outside a transaction
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": version_table(service)},
                    )
                yield connection
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise MigrationError(f"{service}: the migration broke foreign keys")
        finally:
            if sqlite and not connection.invalidated:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _adopt_unversioned(connection: Connection, config: Config, database: Database) -> bool:
    """Stamp a database made by ``create_schema`` before it had migrations at the first
    revision (which creates exactly those tables), so that the upgrade continues from it."""
    present = set(inspect(connection).get_table_names())
    if config.attributes["version_table"] in present or not present & set(database.metadata.tables):
        return False
    command.stamp(config, list(ScriptDirectory.from_config(config).get_bases()))
    return True


def upgrade(database: Database, service: str, package: str, target: str = "heads") -> str:
    """Migrate the service's database to ``target`` (its head); says what it did."""
    config = alembic_config(service, package)
    try:
        with _migrating(database, service) as connection:
            config.attributes["connection"] = connection
            adopted = _adopt_unversioned(connection, config, database)
            command.upgrade(config, target)
            revisions = ", ".join(_revisions(connection, service)) or "base"
    except CommandError as error:  # e.g. the database is at a revision this code lacks
        raise MigrationError(f"{service}: {error}") from error
    return f"revision {revisions}" + ("; existing tables adopted" if adopted else "")


def downgrade(database: Database, service: str, package: str, target: str) -> None:
    """Migrate the service's database down to ``target`` (``base``: no tables left)."""
    config = alembic_config(service, package)
    try:
        with _migrating(database, service) as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, target)
    except CommandError as error:
        raise MigrationError(f"{service}: {error}") from error


def prepare_schema(database: Database, service: str, import_name: str) -> str:
    """Bring a service's schema to head: by its migrations, or ``create_schema()`` for a
    service that has none (its missing tables are created). Says what it did."""
    package = migrations_package(import_name)
    if package is None:
        database.create_schema()
        return "no migrations; missing tables created"
    return upgrade(database, service, package)


def revision(
    database: Database,
    service: str,
    package: str,
    message: str,
    *,
    rev_id: str | None = None,
    autogenerate: bool = True,
) -> Script | None:
    """Write the service's next revision, autogenerated from the difference between its
    models and ``database`` (which should be at head)."""
    config = alembic_config(service, package)
    with _migrating(database, service) as connection:
        config.attributes["connection"] = connection
        script = command.revision(config, message=message, autogenerate=autogenerate, rev_id=rev_id)
    assert not isinstance(script, list)
    return script


def _render_item(type_: str, obj: Any, context: AutogenContext) -> str | Literal[False]:
    """Migrations stand alone: a platform type (``UTCDateTime``) is written as the SQL
    type it stores (``sa.DateTime()``, ``DATETIME(6)`` on MariaDB/MySQL), so a revision
    never imports app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        context.imports.add("from sqlalchemy.dialects import mysql")
        return 'sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")'
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        if type(impl).__module__.startswith("sqlalchemy."):
            return f"sa.{impl!r}"
    return False


def options(connection: Connection, service: str, metadata: MetaData) -> dict[str, Any]:
    """How migrations of a service run and compare, the same for env.py and checks."""
    return {
        "target_metadata": metadata,
        "version_table": version_table(service),
        "render_as_batch": connection.dialect.name == "sqlite",
        "compare_type": True,
        "render_item": _render_item,
    }


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``: run Alembic on the connection
    that ``upgrade``/``revision`` opened, against the service's ``metadata``."""
    config = context.config
    connection = config.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise MigrationError(
            "microshop migrations run through `microshop migrate` (app.runtime.migrations), "
            "online, not through the alembic command"
        )
    options_ = options(connection, config.attributes["service"], metadata)
    context.configure(connection=connection, **options_)
    with context.begin_transaction():
        context.run_migrations()


def differences(database: Database, service: str) -> list[Any]:
    """What autogenerate would change to bring the database in step with the models:
    empty when the migrations and the models agree."""
    with database.engine.connect() as connection:
        opts = options(connection, service, database.metadata)
        migration = MigrationContext.configure(connection, opts=opts)
        return compare_metadata(migration, database.metadata)
