"""A stream handler that writes its lines in batches: one write a fifth of a second.

    handler = BatchingStreamHandler()       # sys.stderr, as logging.StreamHandler
    handler.setFormatter(JsonFormatter())

An access line per request, written and flushed as it comes, is a system call per
request made while holding the handler's lock: under waitress's threads that is a GIL
hand-off and a lock queue on every request (docs/performance.md measured it at about
a sixth of ``/healthz``'s CPU). This handler keeps the formatted lines in memory and
writes them together, like nginx's ``access_log … buffer= flush=``:

- at most ``flush_seconds`` after the first line of a batch (a thread of the handler's
  own, started in each process that logs, so also in each forked worker);
- at once, with every line before it, for a record of WARNING or worse;
- when ``MAX_LINES`` wait, so memory stays bounded under any load;
- on ``flush()``/``close()``, which ``logging.shutdown`` calls at exit, and before a fork,
  so a child never writes its parent's lines again.

What a ``SIGKILL`` loses is at most the last ``flush_seconds`` of INFO lines; every
warning and error is already written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from typing import TextIO

FLUSH_SECONDS = 0.2
MAX_LINES = 1000
_handlers: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO | None = None, flush_seconds: float = FLUSH_SECONDS):
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._lines: list[str] = []
        self._pending = threading.Event()
        """Set while lines wait: the flusher's cue to write them ``flush_seconds`` later."""
        self._flusher_pid = 0
        self._closed = False
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the line (``handle`` holds the handler's lock); write what is kept when
        the record is a warning or worse, or when ``MAX_LINES`` wait."""
        try:
            self._lines.append(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING or len(self._lines) >= MAX_LINES:
                self.flush()
            elif not self._pending.is_set():
                self._start_flusher()
                self._pending.set()
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write every kept line in one call, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            if not self._closed:  # a closed handler's flusher is woken to end
                self._pending.clear()
            lines, self._lines = self._lines, []
            if lines:
                self.stream.write("".join(lines))
            super().flush()

    def close(self) -> None:
        """Write what is kept and stop the flusher (``logging.shutdown`` calls it at exit)."""
        with self.lock:  # type: ignore[union-attr]
            self._closed = True
            self._pending.set()
        _handlers.discard(self)
        try:
            self.flush()
        finally:
            super().close()

    def _start_flusher(self) -> None:
        """One flusher thread per process: a forked child starts its own."""
        if self._flusher_pid != os.getpid() and not self._closed:
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_batches, name="log-flusher", daemon=True).start()

    def _flush_batches(self) -> None:
        while True:
            self._pending.wait()
            if self._closed:
                return
            time.sleep(self.flush_seconds)
            if self._closed:  # close() wrote the lines
                return
            try:
                self.flush()
            except Exception:  # a full disk, a closed pipe: reported as logging reports its own
                self.handleError(logging.makeLogRecord({"msg": "log lines not written"}))


def _flush_before_fork() -> None:
    """A child must not write its parent's kept lines a second time."""
    for handler in list(_handlers):
        # a stream closed under its handler is passed over, as logging.shutdown does
        with contextlib.suppress(OSError, ValueError):
            handler.flush()


os.register_at_fork(before=_flush_before_fork)
