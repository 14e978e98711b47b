"""Bounds on what strangers may leave on a server's disk through its upload route.

Gradio stores every upload as soon as it arrives, whether or not a transcription ever
claims it, and its own settings cover only part of that: `max_file_size` (each file) and
`delete_cache` (age). `UploadGuard`, a plain ASGI middleware, adds the rest:

- one upload request carries at most the size cap (plus the form's few bytes), counted as
  the body arrives; a declared Content-Length over the cap is refused before any byte;
- the upload folder holds at most `upload_store_bytes` and `upload_store_files`, counting
  what is on disk plus what uploads in flight may still write; beyond that a new upload is
  answered 503 until old ones expire;
- files that a cut upload leaves half-written at the folder's top level (Gradio deletes them
  only on a parse error, not on a disconnect) are removed once idle for ORPHAN_AGE_S.

    app.launch(app_kwargs={"middleware": [Middleware(UploadGuard, folder=cache, limits=limits)]})
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from .config import MediaLimits

logger = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers around the file
ORPHAN_AGE_S = 300


class BodyTooLarge(Exception):
    """Raised into a route when its request body passes its allowance."""


def counting_receive(receive, allowance: int):
    """`receive` (ASGI) that counts the body's bytes as they arrive and raises BodyTooLarge past
    `allowance`: what a request claims (Content-Length, or nothing when chunked) is not trusted."""
    received = 0

    async def counted():
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > allowance:
            raise BodyTooLarge
        return message

    return counted


def content_length(scope) -> int | None:
    """The Content-Length a request declares, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


class UploadGuard:
    """ASGI middleware bounding POST requests whose path ends with `route` (Gradio: /upload)."""

    def __init__(self, app, *, folder: Path, limits: MediaLimits, route: str = "/upload"):
        self.app = app
        self.folder = Path(folder)
        self.limits = limits
        self.route = route
        self._reserved_bytes = 0  # what uploads in flight may still write
        self._in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(self.route):
            await self.app(scope, receive, send)
            return
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
        responded = False

        async def watched_send(message):
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        self._reserved_bytes += allowance
        self._in_flight += 1
        try:
            await self.app(scope, counting_receive(receive, allowance), watched_send)
        except BodyTooLarge:
            if not responded:
                await _answer(send, 413, self.limits.too_big())
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


async def _answer(send, status: int, message: str) -> None:
    body = message.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
