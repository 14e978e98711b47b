"""The HTTP server under the apps and the API: uvicorn, with a time bound on every client and a
shutdown deadline.

    webserver.run(app, host, port, config, on_shutdown=[service.begin_shutdown])

uvicorn closes an idle connection only after it has answered a request on it
(`timeout_keep_alive`): a connection that never sends a request, or sends its head a byte at a
time, stays open for ever. Here a request's head must have arrived within
`--keep-alive-seconds` of the connection opening or of the last response, else the connection
is closed (BoundedH11Protocol); the body then has its own deadline and minimum rate
(whisper_gl.uploads.bounded_receive). Every stage of a request is bounded in time.

Shutdown (SIGTERM or Ctrl-C): uvicorn stops listening and closes idle connections; the hooks
learn the time by which everything still in progress must be answered (`--shutdown-timeout`
less SHUTDOWN_MARGIN_S), and shutdown.begin() sets `stopping` (nothing new admitted, downloads
stop). uvicorn waits for the requests in progress until then and cancels what is left; the
caller's shutdown.serving() removes the temporary folders and the process is gone by the
deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import shutdown
from .config import ServerOptions

# Of the shutdown deadline, kept after the requests in progress are answered: half of it for
# uvicorn to send the last answers before it cancels what is left, half for the frameworks' own
# shutdown and removing the temporary files.
SHUTDOWN_MARGIN_S = 1.0


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline on every request head: `timeout_keep_alive`
    seconds from the connection opening, or from the last response, to a complete request head.
    An idle connection and one whose head trickles in are both closed at that deadline."""

    _head_timer: asyncio.TimerHandle | None = None
    _awaited_after: object = None  # the request cycle that was current when the wait began

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        self._await_head()  # first: a pipelined request may start its cycle inside super()
        super().on_response_complete()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not self._awaited_after:  # a new request's head has arrived
            self._stop_waiting()

    def handle_websocket_upgrade(self, event) -> None:
        self._stop_waiting()  # the connection is a WebSocket's from now on
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_waiting()
        self._awaited_after = self.cycle
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_overdue)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.cycle is self._awaited_after and not self.transport.is_closing():
            self.transport.close()


class Server(uvicorn.Server):
    """A uvicorn server whose shutdown has a deadline, announced to `on_shutdown` hooks (called
    with the time, time.monotonic(), by which what is in progress must be answered)."""

    def __init__(self, app, host: str, port: int, options: ServerOptions,
                 on_shutdown: Iterable[Callable[[float], None]] = ()):
        self.timeout = options.shutdown_timeout
        self.margin = min(SHUTDOWN_MARGIN_S, self.timeout / 4)
        self.on_shutdown = list(on_shutdown)
        super().__init__(uvicorn.Config(
            app, host=host, port=port, log_level="warning", http=BoundedH11Protocol,
            timeout_keep_alive=options.keep_alive_seconds,  # type: ignore[arg-type]  (a float works)
            timeout_graceful_shutdown=self.timeout - self.margin / 2))  # type: ignore[arg-type]

    async def shutdown(self, sockets=None) -> None:
        answer_by = time.monotonic() + self.timeout - self.margin
        for hook in self.on_shutdown:
            hook(answer_by)
        logging.getLogger("uvicorn.error").addFilter(_given_up_quietly)
        await super().shutdown(sockets)


def _given_up_quietly(record: logging.LogRecord) -> bool:
    """At the deadline uvicorn cancels what is left, and logs each cancelled request as an
    "Exception in ASGI application" with its traceback: work given up on purpose, said in one
    line by uvicorn ("Cancel N running task(s)") instead."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def run(app, host: str, port: int, options: ServerOptions, on_shutdown: Iterable[Callable[[float], None]] = ()) -> None:
    """Serve `app` (ASGI) until SIGTERM or SIGINT; returns once it has shut down (within
    options.shutdown_timeout). `on_shutdown`: called with the time (time.monotonic()) by which
    the requests in progress must be answered."""
    def process_stops(answer_by: float) -> None:  # the process's own server: its deadline is the process's
        shutdown.begin(options.shutdown_timeout)

    server = Server(app, host, port, options, [process_stops, *on_shutdown])
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn raises the signal it caught again once it has stopped
        pass
