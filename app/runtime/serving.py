"""Serving with waitress, hardened, and stopping without cutting anyone off.

    serve(application, settings, host="127.0.0.1", port=8080)   # what `microshop serve` runs

On SIGTERM (or Ctrl-C) ``serve`` stops taking connections: it accepts the ones the
kernel has already queued, closes the listening socket, lets every accepted request
finish and its answer reach the client (up to ``DRAIN_SECONDS``), then stops the
threads. A connection that has not sent its first request yet is waited for (up to
``FIRST_REQUEST_GRACE_SECONDS`` after it connected); idle keep-alive ones are closed.
At exit, the outbox sweepers stop after the delivery they are making; anything not yet
delivered waits in the outbox for the next start.

Plain ``waitress-serve wsgi:application`` cannot drain like this: waitress lets only the
requests already running finish, for at most 5 s, and drops queued ones. ``wsgi.py``
turns SIGTERM into that clean exit, which is still better than waitress's default.
"""

from __future__ import annotations

import atexit
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from app.settings import ServingLimits, Settings

if TYPE_CHECKING:
    from app.runtime.composition import Application

PROXY_HEADERS = "x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port"
DRAIN_SECONDS = 25  # within the 30 s most orchestrators wait between SIGTERM and SIGKILL
FIRST_REQUEST_GRACE_SECONDS = 2  # a client that connected sends its request at once
LOOP_TIMEOUT = 0.2


def waitress_options(limits: ServingLimits) -> dict[str, Any]:
    options: dict[str, Any] = {
        "threads": limits.threads,
        "connection_limit": limits.connection_limit,
        "channel_timeout": limits.channel_timeout,
        "max_request_header_size": limits.max_header_bytes,
        "max_request_body_size": limits.max_body_bytes,
        "clear_untrusted_proxy_headers": True,
        "ident": "microshop",
    }
    if limits.trusted_proxy:
        options.update(
            trusted_proxy=limits.trusted_proxy,
            trusted_proxy_count=1,
            trusted_proxy_headers=PROXY_HEADERS,
        )
    return options


def _exit(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_cleanly_on_sigterm(application: Application) -> None:
    """For ``waitress-serve``: SIGTERM becomes a clean exit; the sweepers stop at exit.

    Only from the main thread, and only where nobody else (a host server) has claimed
    SIGTERM already."""
    atexit.register(application.dispose)
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _exit)


def _loop_once(server: BaseWSGIServer) -> None:
    wasyncore.loop(
        timeout=LOOP_TIMEOUT, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1
    )


def _channels(server: BaseWSGIServer) -> list[HTTPChannel]:
    return [channel for channel in list(server._map.values()) if isinstance(channel, HTTPChannel)]


def _awaiting_first_request(channel: HTTPChannel) -> bool:
    """Connected within the grace, and nothing read yet: its client is sending a request.

    waitress stamps ``last_activity`` on every read and answer, so a channel whose stamp
    is still its creation time has never received a byte."""
    return (
        channel.last_activity == channel.creation_time
        and time.time() - channel.creation_time < FIRST_REQUEST_GRACE_SECONDS
    )


def _busy(channel: HTTPChannel) -> bool:
    """A request is on its way, being read, waits, runs, or its answer is not yet sent."""
    return bool(
        channel.requests
        or channel.request is not None
        or channel.total_outbufs_len
        or _awaiting_first_request(channel)
    )


def _stop_listening(server: BaseWSGIServer) -> None:
    while (accepted := server.accept()) is not None:  # already queued by the kernel
        connection, address = accepted
        server.set_socket_options(connection)
        server.channel_class(
            server, connection, server.fix_addr(address), server.adj, map=server._map
        )
    server.accepting = False
    wasyncore.dispatcher.close(server)  # the listening socket only; the loop goes on


def drain(server: BaseWSGIServer, stopping: threading.Event) -> None:
    """Run ``server`` until ``stopping`` is set, then finish what was accepted and stop."""
    while not stopping.is_set():
        _loop_once(server)
    _stop_listening(server)
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        channels = _channels(server)
        for channel in channels:
            if not _busy(channel):
                channel.will_close = True  # idle keep-alive: closed, not reused
        if not any(_busy(channel) for channel in channels):
            break
        _loop_once(server)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


def serve(application: Application, settings: Settings, *, host: str, port: int) -> None:
    atexit.register(application.dispose)
    server = create_server(application, host=host, port=port, **waitress_options(settings.serving))
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        server.pull_trigger()  # wake the loop now rather than at its next timeout

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.print_listen("Serving on http://{}:{}")
    drain(server, stopping)
