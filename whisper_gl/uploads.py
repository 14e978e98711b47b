"""Bounds on what strangers may make a Gradio server store or fetch.

Gradio stores every upload as soon as it arrives, whether or not a transcription ever
claims it, and its own settings cover only part of that: `max_file_size` (each file) and
`delete_cache` (age). It also downloads, before any handler runs, every http(s) link that
an event's JSON gives as a file's `path`, and relays any public link asked for at
/gradio_api/file=<link>: with no size or time limit, past our guarded downloader.
`UploadGuard`, a plain ASGI middleware, adds the rest:

- one upload request carries at most the size cap (plus the form's few bytes), counted as
  the body arrives; a declared Content-Length over the cap is refused before any byte; the
  body must arrive within `upload_seconds` and at `min_upload_rate` on average once
  `upload_grace_seconds` have passed (`bounded_receive`), else it is refused (408) and the
  room it reserved freed: a client that trickles holds nothing for long;
- the upload folder holds at most `upload_store_bytes` and `upload_store_files`, counting
  what is on disk plus what uploads in flight may still write; beyond that a new upload is
  answered 503 until old ones expire;
- files that a cut upload leaves half-written at the folder's top level (Gradio deletes them
  only on a parse error, not on a disconnect) are removed once idle for ORPHAN_AGE_S;
- every other POST to Gradio's API (queue/join, call, run, stream, ...: whatever the event)
  and to its /login is read whole under EVENT_BODY_LIMIT and refused (400) if any file in it
  is a link, and /gradio_api/file=<link> is refused (403): the server fetches no link a
  client names there.

    app.launch(app_kwargs={"middleware": [Middleware(UploadGuard, folder=cache, limits=limits)]})
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

from starlette.requests import ClientDisconnect

from .config import MediaLimits

logger = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers around the file
ORPHAN_AGE_S = 300
GRADIO_API = "/gradio_api/"
# An event's JSON holds component values and references to uploaded files, never a file's bytes.
EVENT_BODY_LIMIT = 1_000_000
LINKED_FILE = "send files by upload: a file given as a link is not fetched by this server"


class BodyTooLarge(Exception):
    """Raised into a route when its request body passes its allowance."""


class BodyTooSlow(Exception):
    """Raised into a route when its request body misses its deadline or its minimum rate."""


def bounded_receive(receive, allowance: int, limits: MediaLimits | None = None):
    """`receive` (ASGI) that counts the body's bytes as they arrive and raises BodyTooLarge past
    `allowance`: what a request claims (Content-Length, or nothing when chunked) is not trusted.
    With `limits`, the body must also be complete within limits.upload_seconds and average
    limits.min_upload_rate once limits.upload_grace_seconds have passed: a wait for the next
    piece ends when either would be broken (BodyTooSlow), so a client sending a byte every few
    seconds is refused at the end of the grace period. Once the body is complete, later calls
    (a response listening for the disconnect) are passed through unbounded."""
    received, complete, started = 0, False, time.monotonic()

    def time_left() -> float:
        elapsed = time.monotonic() - started
        rate_holds_until = max(limits.upload_grace_seconds, received / limits.min_upload_rate) \
            if limits.min_upload_rate > 0 else math.inf
        return min(limits.upload_seconds, rate_holds_until) - elapsed

    async def bounded():
        nonlocal received, complete
        if complete or limits is None:
            message = await receive()
        else:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, time_left()))
            except asyncio.TimeoutError:
                raise BodyTooSlow(_too_slow(limits, time.monotonic() - started)) from None
        received += len(message.get("body", b""))
        complete = complete or message["type"] != "http.request" or not message.get("more_body", False)
        if received > allowance:
            raise BodyTooLarge
        return message

    return bounded


def _too_slow(limits: MediaLimits, elapsed: float) -> str:
    if elapsed >= limits.upload_seconds:
        return f"the upload took longer than {limits.upload_seconds:g} s"
    return (f"the upload was too slow (under {limits.min_upload_rate / 1000:g} kB/s after "
            f"{limits.upload_grace_seconds:g} s)")


def content_length(scope) -> int | None:
    """The Content-Length a request declares, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


class UploadGuard:
    """ASGI middleware in front of one or more Gradio apps sharing the upload `folder`: bounds POSTs
    whose path ends with `route` (Gradio: /upload), checks every other request to Gradio's API."""

    def __init__(self, app, *, folder: Path, limits: MediaLimits, route: str = "/upload"):
        self.app = app
        self.folder = Path(folder)
        self.limits = limits
        self.route = route
        self._reserved_bytes = 0  # what uploads in flight may still write
        self._in_flight = 0

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or (GRADIO_API not in path and not path.rstrip("/").endswith("/login")):
            await self.app(scope, receive, send)
        elif _is_link(path.partition(f"{GRADIO_API}file=")[2]):
            await _answer(send, 403, LINKED_FILE)
        elif scope["method"] != "POST":
            await self.app(scope, receive, send)
        elif path.endswith(self.route):
            await self._upload(scope, receive, send)
        else:
            await self._event(scope, receive, send)

    async def _event(self, scope, receive, send) -> None:
        """An event (or any other POST but an upload): small, and naming no file by link."""
        declared = content_length(scope)
        if declared is not None and declared > EVENT_BODY_LIMIT:
            await _answer(send, 413, "this request is too large")
            return
        try:
            body = await _read_body(bounded_receive(receive, EVENT_BODY_LIMIT, self.limits))
        except BodyTooLarge:
            await _answer(send, 413, "this request is too large")
            return
        except BodyTooSlow as error:
            await _answer(send, 408, str(error))
            return
        if _links_a_file(body):
            logger.warning("refused an event that names a file by link")
            await _answer(send, 400, LINKED_FILE)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _upload(self, scope, receive, send) -> None:
        allowance = self.limits.max_bytes + FORM_OVERHEAD
        declared = content_length(scope)
        if declared is not None and declared > allowance:
            await _answer(send, 413, self.limits.too_big(declared))
            return
        allowance = declared if declared is not None else allowance
        refusal = self._store_refusal(allowance)
        if refusal:
            logger.warning("upload refused: %s", refusal)
            await _answer(send, 503, refusal)
            return
        await self._admit(scope, receive, send, allowance)

    async def _admit(self, scope, receive, send, allowance: int) -> None:
        """Pass the upload on, its body bounded. A body over its size or under its pace is answered
        here (413, 408) the moment it is refused, before the error reaches the app: a framework in
        between (a mounted Gradio app) would answer it as its own failure, a 500."""
        responded = refused = False
        bounded = bounded_receive(receive, allowance, self.limits)

        async def watched_send(message):
            nonlocal responded
            if refused:  # our answer went out: what the app says after it is dropped
                return
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        async def guarded_receive():
            nonlocal refused
            try:
                return await bounded()
            except (BodyTooLarge, BodyTooSlow) as error:
                if not responded and not refused:
                    refused = True
                    too_big = isinstance(error, BodyTooLarge)
                    if not too_big:
                        logger.info("an upload was refused: %s", error)
                    await _answer(send, 413 if too_big else 408, self.limits.too_big() if too_big else str(error))
                raise

        self._reserved_bytes += allowance
        self._in_flight += 1
        try:
            await self.app(scope, guarded_receive, watched_send)
        except (BodyTooLarge, BodyTooSlow):
            pass  # answered as it happened
        except ClientDisconnect:  # a cut upload: nobody to answer, no traceback in the log
            logger.info("an upload was cut off by its client")
        except Exception:  # noqa: BLE001 - the app's own error (it answered it) about a body we refused
            if not refused:
                raise
        finally:
            self._reserved_bytes -= allowance
            self._in_flight -= 1

    def _store_refusal(self, allowance: int) -> str | None:
        files, size = self._store_usage()
        if files + self._in_flight + 1 > self.limits.upload_store_files or \
                size + self._reserved_bytes + allowance > self.limits.upload_store_bytes:
            return "the server holds too many uploads right now: try again in a few minutes"
        return None

    def _store_usage(self) -> tuple[int, int]:
        """(files, bytes) in the folder, after removing the idle leftovers of cut uploads."""
        files = size = 0
        now = time.time()
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = Path(root, name)
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    if Path(root) == self.folder and now - stat.st_mtime > ORPHAN_AGE_S:
                        path.unlink()  # a half-written upload, idle: its request is gone
                        continue
                    files += 1
                    size += stat.st_size
        return files, size


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(chunks)


def _is_link(value) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def _links_a_file(body: bytes) -> bool:
    """Whether a JSON body holds a file reference ({"path": ...}, Gradio's FileData) whose path
    is an http(s) link: Gradio would download it before the event's handler runs."""
    try:
        pending = [json.loads(body)]
    except (ValueError, RecursionError):
        return False  # not JSON: Gradio's event routes refuse it themselves
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if _is_link(value.get("path")):
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


async def _answer(send, status: int, message: str) -> None:
    """A plain-text refusal; the connection is closed after it (the body may be unread)."""
    body = message.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
