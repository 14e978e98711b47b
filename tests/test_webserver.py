"""The HTTP server under the apps and the API (whisper_gl.webserver), on a tiny ASGI app: no model,
so these run in the fast lane. The apps' and the API's own bounds are tested in test_apps.py and
test_api.py; the process's signals in test_shutdown.py."""

from __future__ import annotations

import dataclasses
import socket
import time

import requests

from tests.support import serving_in_thread, trickle
from whisper_gl.config import ServerOptions

OPTIONS = dataclasses.replace(ServerOptions(), keep_alive_seconds=1.0, shutdown_timeout=2.0)


async def hello(scope, receive, send):
    """The smallest ASGI app: 200 and a word on any HTTP request."""
    if scope["type"] == "lifespan":
        while True:
            event = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{event}.complete"})
            if event == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def _closed_after(connection: socket.socket, give_up_after: float = 10.0) -> float:
    """Seconds until the server closes `connection` (nothing sent)."""
    started = time.monotonic()
    connection.settimeout(give_up_after)
    while connection.recv(1024):
        pass
    return time.monotonic() - started


def test_an_idle_connection_or_a_trickled_head_is_closed_at_the_head_deadline():
    with serving_in_thread(hello, OPTIONS) as url:
        assert requests.get(url, timeout=10).text == "hello"
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as idle:
            assert 0.5 < _closed_after(idle) < 5  # never sent a byte: closed at keep_alive_seconds
        # A head sent a byte every 0.2 s never completes: closed at the same deadline, no answer.
        slow = trickle(url, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", every=0.2, give_up_after=10)
        assert slow["closed"] and slow["answer"] == b"" and slow["seconds"] < 5, slow


def test_shutdown_announces_its_deadline_to_the_hooks():
    announced = []
    started = time.monotonic()
    with serving_in_thread(hello, OPTIONS, on_shutdown=[announced.append]) as url:
        assert requests.get(url, timeout=10).text == "hello"
    # The hook learnt by when the requests in progress must be answered: within the shutdown
    # deadline, less the server's own margin.
    [answer_by] = announced
    assert started < answer_by < time.monotonic() + OPTIONS.shutdown_timeout
