"""The log handler that writes its lines in batches (app/runtime/batched_log.py)."""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_for

from app.runtime.batched_log import MAX_LINES, BatchingStreamHandler

FLUSH_SECONDS = 0.2


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def handler(stream: io.StringIO) -> Iterator[BatchingStreamHandler]:
    handler = BatchingStreamHandler(stream, flush_seconds=FLUSH_SECONDS)
    yield handler
    handler.close()


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": message, "levelno": level, "name": "test"})


def test_info_lines_are_written_together_within_the_flush_interval(
    handler: BatchingStreamHandler, stream: io.StringIO
):
    handler.handle(record("one"))
    handler.handle(record("two"))
    assert stream.getvalue() == ""  # kept, not yet written
    assert wait_for(lambda: stream.getvalue() == "one\ntwo\n", 2)
    handler.handle(record("three"))  # a new batch after a flush
    assert wait_for(lambda: stream.getvalue() == "one\ntwo\nthree\n", 2)


def test_a_warning_is_written_at_once_after_the_lines_before_it(
    handler: BatchingStreamHandler, stream: io.StringIO
):
    handler.handle(record("served"))
    handler.handle(record("the database is busy", logging.WARNING))
    assert stream.getvalue() == "served\nthe database is busy\n"


def test_the_kept_lines_are_bounded(handler: BatchingStreamHandler, stream: io.StringIO):
    handler.flush_seconds = 3600  # only the bound can write them
    for n in range(MAX_LINES):
        handler.handle(record(f"line {n}"))
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(MAX_LINES)]


def test_closing_writes_what_is_kept_as_logging_does_at_exit(stream: io.StringIO):
    handler = BatchingStreamHandler(stream, flush_seconds=3600)
    handler.handle(record("last words"))
    handler.close()
    assert stream.getvalue() == "last words\n"


def test_a_forked_child_writes_only_its_own_lines(tmp_path: Path):
    path = tmp_path / "log"
    with path.open("a") as stream:
        handler = BatchingStreamHandler(stream, flush_seconds=3600)
        handler.handle(record("parent"))
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's coverage is not collected
            handler.handle(record("child"))
            handler.flush()
            os._exit(0)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handler.close()
    assert path.read_text().splitlines() == ["parent", "child"]


def test_a_line_that_cannot_be_formatted_is_reported_not_raised(
    handler: BatchingStreamHandler, stream: io.StringIO, capsys: pytest.CaptureFixture[str]
):
    broken = logging.makeLogRecord({"msg": "%d items", "args": ("many",)})
    handler.handle(broken)
    handler.handle(record("next"))
    handler.flush()
    assert stream.getvalue() == "next\n"
    assert "--- Logging error ---" in capsys.readouterr().err


def test_a_quiet_handler_does_not_write(handler: BatchingStreamHandler, stream: io.StringIO):
    handler.handle(record("once"))
    assert wait_for(lambda: stream.getvalue() == "once\n", 2)
    time.sleep(3 * FLUSH_SECONDS)
    assert stream.getvalue() == "once\n"


def test_a_fork_beside_a_handler_whose_stream_was_closed_goes_on(tmp_path: Path):
    """A host may close a stream under a handler it dropped: forking must not fail."""
    stream = (tmp_path / "gone").open("w")
    handler = BatchingStreamHandler(stream, flush_seconds=3600)
    handler.handle(record("kept"))
    stream.close()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
