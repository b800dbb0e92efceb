"""Work a process repeats in the background: the outbox sweep, the deny-list refresh.

    refresher = Repeating("deny-list-order", revocations.refresh, every=0.5)
    refresher.start()                       # runs now, then every 0.5 s
    refresher.stop()                        # after the run in progress

A failing run does not end the thread: the next run comes as planned. A streak of
failures is logged when it starts, again ``WARN_AGAIN_AFTER`` seconds later, then after
twice as long each time up to ``WARN_AT_MOST_EVERY``, and once when it ends. What cannot
run yet (``DatabaseNotReady``: a database without its schema before ``microshop migrate``,
or out of reach; ``DatabaseBusy``: a lock conflict lost, rolled back; ``ServiceUnavailable``:
another service) is a one-line warning that names it; anything else is an error with its
traceback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.kit.database import DatabaseBusy, DatabaseNotReady
from app.kit.errors import ServiceUnavailable

log = logging.getLogger("microshop.background")
WARN_AGAIN_AFTER = 10.0
"""Seconds from the first log line of a streak of failures to the second."""
WARN_AT_MOST_EVERY = 600.0
"""The longest a streak of failures goes unmentioned in the log."""


class Repeating:
    """A daemon thread that runs ``action`` at once and then every ``every`` seconds."""

    def __init__(
        self,
        name: str,
        action: Callable[[], object],
        *,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.action = action
        self.every = every
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._next_warning: float | None = None
        """When a streak of failures is logged again; None while the runs succeed."""
        self._quiet = WARN_AGAIN_AFTER
        """How long the streak goes unmentioned after its latest log line."""

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every)

    def run_once(self) -> None:
        """Run ``action`` now, and log what the streak of failures calls for."""
        try:
            self.action()
        except Exception as error:  # a database blip must not end the thread
            self._failed(error)
        else:
            if self._next_warning is not None:
                log.warning("%s works again", self.name)
            self._next_warning = None

    def _failed(self, error: Exception) -> None:
        now = self.clock()
        if self._next_warning is None:  # a streak starts
            self._quiet = WARN_AGAIN_AFTER
        elif now >= self._next_warning:  # it lasts: said again, then quiet twice as long
            self._quiet = min(2 * self._quiet, WARN_AT_MOST_EVERY)
        else:
            return
        self._next_warning = now + self._quiet
        if isinstance(error, DatabaseNotReady | DatabaseBusy | ServiceUnavailable):
            log.warning(
                "%s cannot run: %s; it is retried every %g s", self.name, error.message, self.every
            )
        else:
            log.error("%s failed; it is retried every %g s", self.name, self.every, exc_info=error)

    def stop(self) -> None:
        """Stop after the run in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
