"""Each service's own database: one engine per service, one transaction per unit of work.

    database = Database.connect(settings.database_url("user"), Base.metadata)
    with database.unit_of_work() as session:    # commits at the end, rolls back on error
        session.add(user)

    with database.unit_of_work(readonly=True) as session:    # a read: never waits for one
        session.get(User, 7)

A unit of work that writes begins with ``BEGIN IMMEDIATE`` on SQLite (SQLAlchemy's
pysqlite serializable recipe: concurrent writers queue instead of failing or racing); a
read-only one with ``BEGIN DEFERRED``, so readers never queue behind each other or a
writer (WAL), on PostgreSQL as ``READ ONLY``, on MariaDB/MySQL as ``START TRANSACTION
READ ONLY``. SQLite also gets WAL, foreign keys and a busy timeout; MariaDB/MySQL get
utf8mb4, READ COMMITTED (as PostgreSQL), ``DATETIME(6)`` and binary collations.
A unit of work on a database that has no schema yet, or cannot be reached, raises
``DatabaseNotReady`` (503 ``service_unavailable`` naming it) instead of the driver's error,
and works as soon as the schema is there: no restart after ``microshop migrate``. One
that loses a lock conflict (SQLite still locked after the busy timeout, a deadlock, a
lock wait timeout, a serialization failure) is rolled back and raises ``DatabaseBusy``
(503 ``service_unavailable`` with ``Retry-After``): the client may simply send it again.
``postgresql://`` URLs use psycopg 3, ``mysql://`` and ``mariadb://`` PyMySQL. Errors
never quote query parameters (they may hold what a client sent), so a logged traceback
carries no secrets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Enum,
    MetaData,
    Row,
    Select,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.types import TypeEngine

from app.settings import normalize_url

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_SECONDS = 5
"""A silent database host must not hang a request or ``/readyz``."""
MYSQL_DIALECTS = ("mysql", "mariadb")
MYSQL_CHECK_FAILED = 4025
SQLITE_CONFLICTS = frozenset({5, 6})
"""SQLITE_BUSY and SQLITE_LOCKED (primary result codes): still locked after the timeout."""
POSTGRESQL_CONFLICTS = frozenset({"40P01", "40001", "55P03"})
"""deadlock_detected, serialization_failure, lock_not_available (``lock_timeout``)."""
MYSQL_CONFLICTS = frozenset({1205, 1213})
"""Lock wait timeout (``innodb_lock_wait_timeout``), deadlock."""
POSTGRESQL_UNDEFINED_TABLE = "42P01"
MYSQL_NO_SUCH_TABLE = 1146
MYSQL_POOL_RECYCLE_SECONDS = 3600
"""A pooled connection is replaced after an hour, before the server's ``wait_timeout``
(8 hours by default, often less behind a proxy) closes it; ``pool_pre_ping`` catches the rest."""
READ_ONLY = "microshop_read_only"
"""The execution option that marks a read-only unit of work's connection."""
UNNAMED = "this service's"
"""The name of a database nobody named, as errors say it."""
MAX_ID = 2**31 - 1
"""The largest row id: an INTEGER on every database microshop runs on."""
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every constraint and index has a name microshop chose, the same on every database, so
a later migration can find it to change or drop it (SQLite's batch mode needs that)."""


class DatabaseNotReady(Exception):
    """A service's database has no schema yet (production before ``microshop migrate``) or
    cannot be reached. ``init_service`` answers it 503 ``service_unavailable`` naming the
    service and the state, as ``/readyz`` does."""

    REASONS = {
        "schema_missing": "has no schema yet: run `microshop migrate`",
        "unreachable": "cannot be reached",
    }

    def __init__(self, service: str, state: str):
        self.message = f"{service} database {self.REASONS.get(state, state)}"
        super().__init__(self.message)
        self.service = service
        self.state = state


class DatabaseBusy(Exception):
    """A unit of work of ``service`` lost a lock conflict and was rolled back; it may be
    tried again as it is. ``init_service`` answers it 503 ``service_unavailable`` with
    ``Retry-After``; the runtime's background work tries again on its next round."""

    def __init__(self, service: str, conflict: str):
        self.message = f"{service} database is busy: retry"
        super().__init__(self.message)
        self.service = service
        self.conflict = conflict
        """What the database said, its first line (never a query parameter)."""


def lock_conflict(error: DBAPIError, dialect: str) -> str | None:
    """What the database said if ``error`` is a lost lock conflict, to be tried again; else
    None."""
    original = error.orig
    if dialect == "sqlite":
        lost = getattr(original, "sqlite_errorcode", 0) & 0xFF in SQLITE_CONFLICTS
    elif dialect == "postgresql":
        lost = getattr(original, "sqlstate", None) in POSTGRESQL_CONFLICTS
    elif dialect in MYSQL_DIALECTS:  # PyMySQL: (code, message); its sqlstate is often HY000
        lost = bool(original.args) and original.args[0] in MYSQL_CONFLICTS
    else:
        lost = False
    if not lost:
        return None
    said = str(original.args[-1] if original.args else original).strip().splitlines()
    return said[0] if said else type(original).__name__


def missing_table(error: DBAPIError, dialect: str) -> bool:
    """Whether ``error`` says a table does not exist: its schema is missing, or is being
    made by a migration in another process."""
    original = error.orig
    if dialect == "sqlite":
        return str(original).startswith("no such table")
    if dialect == "postgresql":
        return getattr(original, "sqlstate", None) == POSTGRESQL_UNDEFINED_TABLE
    if dialect in MYSQL_DIALECTS:
        return bool(original.args) and original.args[0] == MYSQL_NO_SUCH_TABLE
    return False


def read_row(session: Session, model: type[Any], row_id: int) -> Row[Any] | None:
    """``model``'s row with primary key ``row_id`` as the database holds it; None if none.

    For a request that only reads the row to answer it: ``Session.get`` builds an instance,
    tracks its changes and keeps it in the identity map, which such a request never uses;
    without it, ``GET /order/<id>`` made 1.21x the requests under waitress at 0.83x the
    CPU (docs/performance.md). The row reads like the instance (``row.status``,
    ``row.created_at``, the same types), so a ``ResponseModel`` takes either."""
    statement = _by_primary_key(model.__table__)
    return session.connection().execute(statement, {"row_id": row_id}).first()


@functools.cache
def _by_primary_key(table: Table) -> Select[Any]:
    """One statement per table, made once."""
    (key,) = table.primary_key.columns
    return select(table).where(key == bindparam("row_id"))


def status_type(statuses: type[StrEnum], *, length: int) -> Enum:
    """A column type for a ``StrEnum`` of statuses: stored as its values (``"paid"``) in
    a string column with a CHECK constraint, the same on every database (no native enum
    type for a migration to alter)."""
    return Enum(
        statuses,
        native_enum=False,
        length=length,
        create_constraint=True,
        values_callable=lambda members: [member.value for member in members],
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC (portable to SQLite) and read back UTC-aware, to the
    microsecond everywhere: on MariaDB/MySQL as ``DATETIME(6)``, since their ``DATETIME``
    drops the fraction (``15:57:46.123456`` would come back ``15:57:46``)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name in MYSQL_DIALECTS:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        readonly = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")


def _configure_mysql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("START TRANSACTION READ ONLY")

    @event.listens_for(engine, "handle_error")
    def on_error(context: ExceptionContext) -> DBAPIError | None:
        """A failed CHECK is an ``IntegrityError`` on every database (PyMySQL makes
        MariaDB's 4025 an ``OperationalError``)."""
        code = getattr(context.original_exception, "args", (None,))[0]
        if code == MYSQL_CHECK_FAILED and context.sqlalchemy_exception is not None:
            return IntegrityError(
                context.statement, None, context.original_exception, hide_parameters=True
            )
        return None


@compiles(CreateTable, "mysql")
@compiles(CreateTable, "mariadb")
def _create_table_on_mysql(create: CreateTable, compiler: DDLCompiler, **kw: Any) -> str:
    """Every table on MariaDB/MySQL compares its strings as PostgreSQL and SQLite do:
    byte for byte, trailing spaces included, whatever the database's default collation
    (case-insensitive there): an ``Idempotency-Key`` ``Ab`` is not ``ab`` nor ``ab ``.
    What is unique regardless of case (usernames, emails) is stored lower-cased."""
    collation = "utf8mb4_nopad_bin" if compiler.dialect.is_mariadb else "utf8mb4_0900_bin"  # type: ignore[attr-defined]
    return compiler.visit_create_table(create, **kw) + f" CHARSET=utf8mb4 COLLATE={collation}"


def _mysql_connect_args(query: Mapping[str, Any]) -> dict[str, Any]:
    """utf8mb4 (all of Unicode; MySQL's ``utf8`` is 3 bytes) and a connect timeout, unless
    the URL says otherwise."""
    connect_args: dict[str, Any] = {}
    if "charset" not in query:
        connect_args["charset"] = "utf8mb4"
    if "connect_timeout" not in query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return connect_args


class Database:
    """A service's engine, and its units of work."""

    def __init__(self, engine: Engine, metadata: MetaData, *, name: str = UNNAMED):
        self.engine = engine
        self.metadata = metadata
        self.name = name
        """Whose database this is (``order``), as errors name it."""
        self._writes = sessionmaker(engine, expire_on_commit=False)
        self._reads = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._on_commit: list[Callable[[Session], None]] = []

    @classmethod
    def connect(
        cls, url: str, metadata: MetaData, *, name: str = UNNAMED, synchronous: str = "NORMAL"
    ) -> Database:
        """An engine for ``url``, the database of service ``name``; ``synchronous`` is
        SQLite's durability (FULL: power-cut safe)."""
        url = normalize_url(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                hide_parameters=True,
            )
            _configure_sqlite(engine, synchronous)
        elif parsed.get_backend_name() in MYSQL_DIALECTS:
            engine = create_engine(
                url,
                pool_pre_ping=True,  # a connection the server closed (wait_timeout) is replaced
                pool_recycle=MYSQL_POOL_RECYCLE_SECONDS,
                isolation_level="READ COMMITTED",  # as PostgreSQL: see docs/operations.md
                connect_args=_mysql_connect_args(parsed.query),
                hide_parameters=True,
            )
            _configure_mysql(engine)
        else:
            connect_args = {}
            if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
                connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
            engine = create_engine(
                url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
            )
            if parsed.get_backend_name() == "postgresql":
                _configure_postgresql(engine)
        return cls(engine, metadata, name=name)

    def on_commit(self, listener: Callable[[Session], None]) -> None:
        """Call ``listener`` with the session of every unit of work that wrote and committed,
        once its connection is released (the event relay starts delivery there)."""
        self._on_commit.append(listener)

    @contextmanager
    def unit_of_work(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        ``readonly`` for a read (a GET, a token check): on SQLite it takes no lock, so it
        never waits for another reader or for a writer. ``DatabaseNotReady`` if the
        database has no schema yet or cannot be reached; ``DatabaseBusy`` once rolled back
        after a lost lock conflict."""
        try:
            with (self._reads if readonly else self._writes)() as session, session.begin():
                yield session
        except DBAPIError as error:
            conflict = lock_conflict(error, self.engine.dialect.name)
            if conflict is not None:
                raise DatabaseBusy(self.name, conflict) from error
            if isinstance(error, OperationalError | ProgrammingError):
                # A table missing now is "not ready" even if a migration has made it by
                # the time ``state`` looks.
                dialect = self.engine.dialect.name
                state = "schema_missing" if missing_table(error, dialect) else self.state()
                if state != "ok":
                    raise DatabaseNotReady(self.name, state) from error
            raise
        if not readonly:
            for listener in self._on_commit:
                listener(session)

    def create_schema(self) -> None:
        self.metadata.create_all(self.engine)

    def state(self) -> str:
        """``ok``, ``unreachable``, or ``schema_missing`` (production before ``init-db``)."""
        try:
            with self.engine.connect() as connection:
                present = set(inspect(connection).get_table_names())
        except Exception:  # any failure to reach it means "not ready"
            return "unreachable"
        return "ok" if set(self.metadata.tables) <= present else "schema_missing"

    def dispose(self) -> None:
        self.engine.dispose()
