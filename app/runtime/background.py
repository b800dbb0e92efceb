"""Work a process repeats in the background: the outbox sweep, the deny-list refresh.

    refresher = Repeating("deny-list-order", revocations.refresh, every=0.5)
    refresher.start()                       # runs now, then every 0.5 s
    refresher.stop()                        # after the run in progress

A failing run is logged once when a streak of failures starts (not every half second of
an outage) and once when it ends; the next run comes as planned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("microshop.background")


class Repeating:
    """A daemon thread that runs ``action`` at once and then every ``every`` seconds."""

    def __init__(self, name: str, action: Callable[[], object], *, every: float):
        self.name = name
        self.action = action
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.action()
            except Exception:  # a database blip must not end the thread
                if not failing:
                    log.exception("%s failed; it is retried every %s s", self.name, self.every)
                failing = True
            else:
                if failing:
                    log.warning("%s works again", self.name)
                failing = False
            self._stop.wait(self.every)

    def stop(self) -> None:
        """Stop after the run in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
