"""Units of work: a write takes the write lock, a read takes none and never waits."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import String, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from support import (
    DATABASE_BACKENDS,
    ONLY_MYSQL,
    ONLY_POSTGRES,
    Shop,
    scratch_databases,
)

from app.kit.database import Database, DatabaseNotReady, UTCDateTime, read_row
from app.settings import normalize_url

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)

WAIT = 5.0
"""Far longer than a read takes, far shorter than SQLite's 10 s busy timeout."""


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


class Stamp(Base):
    """A string that is unique as it is written, and a time."""

    __tablename__ = "stamps"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


@pytest.fixture
def bare_database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A database whose tables were never made, as in production before ``microshop migrate``."""
    with scratch_databases(backend, tmp_path) as url_of:
        database = Database.connect(url_of("notes"), Base.metadata, name="notes")
        yield database
        database.dispose()


@pytest.fixture
def database(bare_database: Database) -> Database:
    bare_database.create_schema()
    with bare_database.unit_of_work() as session:
        session.add(Note(text="first"))
    return bare_database


def held_open(database: Database, *, readonly: bool) -> tuple[threading.Event, threading.Thread]:
    """A unit of work that has read (and, unless ``readonly``, written) and stays open
    until the returned event is set."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with database.unit_of_work(readonly=readonly) as session:
            session.scalars(select(Note)).all()
            if not readonly:
                session.add(Note(text="uncommitted"))
                session.flush()
            inside.set()
            release.wait(WAIT * 2)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(WAIT)
    return release, thread


def read_in_another_thread(database: Database) -> tuple[threading.Event, list[str]]:
    done, seen = threading.Event(), []

    def read() -> None:
        with database.unit_of_work(readonly=True) as session:
            seen.extend(session.scalars(select(Note.text)))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    return done, seen


def test_two_reads_do_not_wait_for_each_other(database: Database):
    release, holder = held_open(database, readonly=True)
    try:
        done, seen = read_in_another_thread(database)
        assert done.wait(WAIT), "a read waited for another read to end"
        assert seen == ["first"]
    finally:
        release.set()
        holder.join()


def test_a_read_does_not_wait_for_a_writer_and_sees_only_what_is_committed(database: Database):
    release, holder = held_open(database, readonly=False)
    try:
        done, seen = read_in_another_thread(database)
        assert done.wait(WAIT), "a read waited for a writer to end"
        assert seen == ["first"]
    finally:
        release.set()
        holder.join()


def test_two_writers_take_turns(database: Database):
    """A writer holds SQLite's write lock from its first statement (BEGIN IMMEDIATE), so a
    second one waits for it rather than failing halfway; PostgreSQL's row locks do the same
    for rows both change."""
    release, holder = held_open(database, readonly=False)
    finished = threading.Event()

    def write() -> None:
        with database.unit_of_work() as session:
            session.get(Note, 1, with_for_update=True).text = "second writer"
        finished.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        if database.engine.dialect.name == "sqlite":
            assert not finished.wait(0.5), "a second writer did not wait for the first"
    finally:
        release.set()
        holder.join()
        writer.join()
    assert finished.is_set()


def test_only_a_unit_of_work_that_writes_tells_its_listeners(database: Database):
    committed: list[Session] = []
    database.on_commit(committed.append)
    with database.unit_of_work(readonly=True) as session:
        session.scalars(select(Note)).all()
    assert committed == []
    with database.unit_of_work() as session:
        session.add(Note(text="second"))
    assert committed == [session]

    def change_that_fails() -> None:
        with database.unit_of_work() as session:
            session.add(Note(text="rolled back"))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert len(committed) == 1


@pytest.mark.parametrize("backend", [ONLY_POSTGRES, ONLY_MYSQL])
def test_a_read_only_unit_of_work_refuses_to_write_on_a_server(database: Database):

    def write_in_a_read() -> None:
        with database.unit_of_work(readonly=True) as session:
            session.add(Note(text="sneaked in"))
            session.flush()

    with pytest.raises(DBAPIError, match=r"(?i)read[- ]only transaction"):
        write_in_a_read()
    with database.unit_of_work(readonly=True) as session:
        assert list(session.scalars(select(Note.text))) == ["first"]


def _read_notes(database: Database, *, readonly: bool) -> list[str]:
    with database.unit_of_work(readonly=readonly) as session:
        return list(session.scalars(select(Note.text)))


@pytest.mark.parametrize("readonly", [True, False])
def test_a_unit_of_work_before_the_schema_exists_says_so_naming_it(
    bare_database: Database, readonly: bool
):
    with pytest.raises(DatabaseNotReady) as refused:
        _read_notes(bare_database, readonly=readonly)
    error = refused.value
    assert (error.service, error.state) == ("notes", "schema_missing")
    assert error.message == "notes database has no schema yet: run `microshop migrate`"
    assert isinstance(error.__cause__, DBAPIError)


def test_once_the_schema_is_made_the_same_database_works(bare_database: Database):
    with pytest.raises(DatabaseNotReady):
        _read_notes(bare_database, readonly=True)
    bare_database.create_schema()  # as ``microshop migrate`` does, from another process
    with bare_database.unit_of_work() as session:
        session.add(Note(text="after migrate"))
    assert _read_notes(bare_database, readonly=True) == ["after migrate"]


def test_a_table_missing_when_read_is_not_ready_even_if_the_schema_is_whole_a_moment_later(
    database: Database,
):
    """A migration in another process: the statement finds no table, the migration ends,
    and only then is the schema looked at. The job or request is still "not ready" (a
    warning, a 503), not an unknown error with a traceback."""
    with pytest.raises(DatabaseNotReady) as refused, database.unit_of_work() as session:
        session.execute(text("SELECT text FROM notes_made_by_the_next_migration"))
    assert (refused.value.service, refused.value.state) == ("notes", "schema_missing")
    assert database.state() == "ok"


def test_a_failing_statement_on_a_ready_database_stays_its_own_error(database: Database):
    with pytest.raises(DBAPIError) as failed, database.unit_of_work(readonly=True) as session:
        session.execute(text("SELECT no_such_column FROM notes"))
    assert not isinstance(failed.value, DatabaseNotReady)


def test_an_unreachable_database_says_so_naming_it():
    closed_port = "postgresql://microshop@127.0.0.1:9/nowhere?connect_timeout=2"
    database = Database.connect(closed_port, Base.metadata, name="notes")
    try:
        with pytest.raises(DatabaseNotReady) as refused:
            _read_notes(database, readonly=True)
    finally:
        database.dispose()
    assert (refused.value.service, refused.value.state) == ("notes", "unreachable")
    assert refused.value.message == "notes database cannot be reached"


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("mysql://u@h/db", "mysql+pymysql://u@h/db"),
        ("mariadb://u@h/db", "mariadb+pymysql://u@h/db"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
        ("sqlite:///shop.db", "sqlite:///shop.db"),
    ],
)
def test_a_url_without_a_driver_means_the_installed_one(url: str, meant: str):
    assert normalize_url(url) == meant


def test_a_time_comes_back_to_the_microsecond(database: Database):
    """MariaDB's plain DATETIME would drop the fraction (12:00:00.123456 -> 12:00:00)."""
    at = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with database.unit_of_work() as session:
        session.add(Stamp(key="k", at=at))
    with database.unit_of_work(readonly=True) as session:
        assert session.scalars(select(Stamp.at)).one() == at


def test_strings_are_unique_and_equal_byte_for_byte(database: Database):
    """As on PostgreSQL, whatever the server's default collation (MariaDB's ignores case
    and trailing spaces): ``Key``, ``key`` and ``key `` are three keys."""
    now = datetime.now(UTC)
    with database.unit_of_work() as session:
        session.add_all([Stamp(key=key, at=now) for key in ("Key", "key", "key ")])
    with database.unit_of_work(readonly=True) as session:
        for key in ("Key", "key", "key "):
            assert session.scalars(select(Stamp.key).where(Stamp.key == key)).all() == [key]
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        session.add(Stamp(key="key", at=now))


@pytest.mark.parametrize("backend", [ONLY_POSTGRES, ONLY_MYSQL])
def test_a_unit_of_work_reads_what_another_committed_meanwhile(database: Database):
    """READ COMMITTED on both servers: a check after a wait sees the current rows (InnoDB's
    default REPEATABLE READ would keep showing the first read's snapshot)."""
    count = select(func.count()).select_from(Note)
    with database.unit_of_work() as session:
        assert session.scalar(count) == 1
        with database.unit_of_work() as other:
            other.add(Note(text="meanwhile"))
        assert session.scalar(count) == 2


def test_the_api_gives_the_time_it_stored(shop: Shop):
    """A timestamp read back from the database is the one the API answered when it was
    made, to the microsecond, in the same format on every database."""
    alice = shop.users.signed_up()
    placed = shop.order(alice)
    read = shop.orders.get(f"/{placed['id']}", headers=alice.headers).json["data"]
    assert read["created_at"] == placed["created_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", read["created_at"])


def test_a_row_read_as_stored_reads_like_the_instance(database: Database):
    """``read_row``: what a read-only request answers from, without the ORM's instance."""
    at = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    with database.unit_of_work() as session:
        session.add(Stamp(key="row", at=at))
    with database.unit_of_work(readonly=True) as session:
        stamp_id = session.scalars(select(Stamp.id).where(Stamp.key == "row")).one()
        row = read_row(session, Stamp, stamp_id)
        instance = session.get(Stamp, stamp_id)
        assert row is not None
        assert instance is not None
        assert (
            (row.id, row.key, row.at)
            == (instance.id, instance.key, instance.at)
            == (
                stamp_id,
                "row",
                at,
            )
        )
        assert row.at.tzinfo is UTC  # the column's type applied, as for the instance
        assert read_row(session, Stamp, stamp_id + 1000) is None
