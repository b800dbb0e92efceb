"""Background jobs: a streak of failures is logged when it starts and then with back-off,
one line and no traceback while a database is not ready, and once when it ends."""

from __future__ import annotations

import itertools
import logging
import threading

import pytest

from app.kit.database import DatabaseNotReady
from app.runtime.background import WARN_AGAIN_AFTER, WARN_AT_MOST_EVERY, Repeating


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Action:
    """Fails with ``error`` until told otherwise."""

    def __init__(self, error: Exception | None):
        self.error = error

    def __call__(self) -> None:
        if self.error is not None:
            raise self.error


def run_for(job: Repeating, clock: Clock, seconds: float) -> None:
    """Run ``job`` as its thread would, every ``job.every`` seconds of the fake clock."""
    end = clock.now + seconds
    while clock.now < end:
        job.run_once()
        clock.now += job.every


def background_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "microshop.background"]


def test_a_database_not_ready_is_one_warning_without_traceback_repeated_with_back_off(
    caplog: pytest.LogCaptureFixture,
):
    clock = Clock()
    action = Action(DatabaseNotReady("order", "schema_missing"))
    job = Repeating("outbox-order", action, every=2, clock=clock)
    with caplog.at_level(logging.INFO, logger="microshop.background"):
        run_for(job, clock, 4 * WARN_AGAIN_AFTER)
    records = background_records(caplog)
    assert len(records) == 3  # at 0 s, after the first gap, after twice that gap
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        assert record.exc_text is None
        assert record.getMessage() == (
            "outbox-order cannot run: order database has no schema yet: "
            "run `microshop migrate`; it is retried every 2 s"
        )


def test_the_warnings_back_off_to_at_most_one_in_a_while(caplog: pytest.LogCaptureFixture):
    clock = Clock()
    action = Action(DatabaseNotReady("order", "unreachable"))
    job = Repeating("deny-list-order", action, every=0.5, clock=clock)
    logged_at: list[float] = []
    with caplog.at_level(logging.INFO, logger="microshop.background"):
        for _ in range(int(3 * WARN_AT_MOST_EVERY / job.every)):
            before = len(background_records(caplog))
            job.run_once()
            if len(background_records(caplog)) > before:
                logged_at.append(clock.now)
            clock.now += job.every
    gaps = [later - earlier for earlier, later in itertools.pairwise(logged_at)]
    assert gaps[0] == WARN_AGAIN_AFTER
    for gap, next_gap in itertools.pairwise(gaps):
        assert next_gap == min(2 * gap, WARN_AT_MOST_EVERY)
    assert gaps[-1] == WARN_AT_MOST_EVERY


def test_a_job_that_works_again_says_so_once_and_a_new_streak_is_told_at_once(
    caplog: pytest.LogCaptureFixture,
):
    clock = Clock()
    action = Action(DatabaseNotReady("order", "schema_missing"))
    job = Repeating("outbox-order", action, every=2, clock=clock)
    with caplog.at_level(logging.INFO, logger="microshop.background"):
        run_for(job, clock, 6)
        action.error = None  # microshop migrate ran
        run_for(job, clock, 6)
        action.error = DatabaseNotReady("order", "unreachable")
        run_for(job, clock, 2)
    messages = [record.getMessage() for record in background_records(caplog)]
    assert messages == [
        "outbox-order cannot run: order database has no schema yet: run `microshop migrate`;"
        " it is retried every 2 s",
        "outbox-order works again",
        "outbox-order cannot run: order database cannot be reached; it is retried every 2 s",
    ]


def test_an_unexpected_failure_is_logged_with_its_traceback_at_the_same_pace(
    caplog: pytest.LogCaptureFixture,
):
    clock = Clock()
    job = Repeating("outbox-order", Action(KeyError("bug")), every=2, clock=clock)
    with caplog.at_level(logging.INFO, logger="microshop.background"):
        run_for(job, clock, 4 * WARN_AGAIN_AFTER)
    records = background_records(caplog)
    assert len(records) == 3
    for record in records:
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert record.exc_info[0] is KeyError
        assert record.getMessage() == "outbox-order failed; it is retried every 2 s"


def test_a_started_job_runs_at_once_and_stops_after_the_run_in_progress():
    ran = threading.Event()
    job = Repeating("chore", ran.set, every=60)
    job.start()
    assert ran.wait(5)
    job.stop()
    assert not job._thread.is_alive()
