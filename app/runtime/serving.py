"""Serving with waitress, hardened, answering in JSON, and stopping without cutting anyone off.

    listener = listen(settings.serving, host="127.0.0.1", port=8080)   # bound, then
    serve(create_application(settings), listener)                      # `microshop serve`

``listen`` binds first, so a port in use or a host that is no address is told in one
line (``ListenError``) before anything is built. What waitress answers itself, before
the application sees a request (a malformed request line, headers over
``max_header_bytes``, a body over ``max_body_bytes``), is API.md's JSON envelope, as
every other error is, rather than waitress's ``text/plain``.

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
import json
import logging
import re
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from app.kit.request_id import fresh_id
from app.settings import ServingLimits

if TYPE_CHECKING:
    from app.runtime.composition import Application

PROXY_HEADERS = "x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port"
DRAIN_SECONDS = 25  # within the 30 s most orchestrators wait between SIGTERM and SIGKILL
FIRST_REQUEST_GRACE_SECONDS = 2  # a client that connected sends its request at once
LOOP_TIMEOUT = 0.2
SERVER_ERRORS = {
    400: ("bad_request", "malformed request"),
    413: ("payload_too_large", "request body is larger than the limit"),
    431: ("request_header_fields_too_large", "request headers are larger than the limit"),
    500: ("internal_error", "internal server error"),
    501: ("not_implemented", "the server cannot handle this request"),
}
"""waitress's own answers, by status: the slug and message of API.md's envelope."""
_REQUEST_ID = re.compile(r"^[\x20-\x7e]{1,128}$")  # as app.kit.request_id accepts one
_DETAIL_CHARACTERS = 200

log = logging.getLogger("microshop.serving")


class ListenError(Exception):
    """The server cannot listen where it was asked to."""


class JsonErrorTask(ErrorTask):
    """waitress's answer to a request it refused itself, in the JSON envelope."""

    def execute(self) -> None:
        error = self.request.error
        slug, message = SERVER_ERRORS.get(error.code, SERVER_ERRORS[400])
        if error.code == 400 and error.body:  # what waitress found wrong, e.g. "Bad URI"
            message = f"{message}: {str(error.body)[:_DETAIL_CHARACTERS]}"
        body = json.dumps({"code": error.code, "msg": message, "data": {"error": slug}})
        payload = (body + "\n").encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(
            [("Content-Type", "application/json"), ("X-Request-ID", self._request_id())]
        )
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)

    def _request_id(self) -> str:
        given = self.request.headers.get("X_REQUEST_ID", "")
        return given if _REQUEST_ID.match(given) else fresh_id()


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


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


class Listener:
    """A server bound to its port before its application is built, and the WSGI callable
    waitress holds until then: waitress wraps what it is given (the proxy headers), so
    ``serve`` fills the application in here rather than replacing what waitress holds."""

    def __init__(self, limits: ServingLimits, *, host: str, port: int):
        self.application: Application | None = None
        self.server = create_server(self, host=host, port=port, **waitress_options(limits))
        self.server.channel_class = JsonErrorChannel

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.application is not None, "serve() gives the application before any request"
        return self.application(environ, start_response)

    def close(self) -> None:
        """Let go of a server that will not serve (its application could not be built)."""
        self.server.close()
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)


def listen(limits: ServingLimits, *, host: str, port: int) -> Listener:
    try:
        return Listener(limits, host=host, port=port)
    except OSError as error:
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except ValueError:  # waitress's word for a host that resolves to no address
        raise ListenError(f"cannot listen on {host}:{port}: {host!r} is not an address") from None


def serve(application: Application, listener: Listener) -> None:
    atexit.register(application.dispose)
    listener.application = application
    server = listener.server
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        server.pull_trigger()  # wake the loop now rather than at its next timeout

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host = server.effective_host
    log.info("serving on http://%s:%s", f"[{host}]" if ":" in host else host, server.effective_port)
    drain(server, stopping)
