"""A clean exit for the servers (the apps, and any other door that serves the engine).

    with serving():                       # SIGTERM now stops the server the way Ctrl-C does
        cache = kept_folder("whisper-gl-app-")
        ...serve...                       # the web server calls begin(timeout) when it starts to stop
    # on the way out: in-flight downloads stopped, every folder made here removed

Docker, systemd and Spaces stop a process with SIGTERM, which by default kills Python
without running any cleanup. Inside `serving()` SIGTERM raises KeyboardInterrupt in the main
thread like SIGINT, so the web server shuts down its own way. A server with a shutdown
deadline (whisper_gl.webserver) calls `begin(timeout)` as soon as it starts to stop:
`stopping` is set (nothing new is admitted; a download in flight notices it at its next read
and unwinds) and `deadline` fixed. On the way out `removing` is set and every folder this
process made with `temporary_folder` or `kept_folder` is removed (only those: files of other
processes in a shared temporary folder are never touched); work still running in other
threads when the deadline comes (a decode that did not fit) does not keep the process alive.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

# Set once the process is shutting down: nothing new is admitted, long work checks it and stops.
stopping = threading.Event()
# Set once this process's folders are being removed: nothing may be written into them any more.
removing = threading.Event()
# How long the exit waits for in-flight work to give back its temporary folders (at most).
RELEASE_WAIT_S = 5.0
# When the process must be gone (time.monotonic()), once a server with a deadline began to stop.
deadline: Optional[float] = None

_lock = threading.Lock()
_in_use: set[Path] = set()  # temporary_folder blocks still running
_kept: set[Path] = set()  # kept_folder: removed at exit


@contextlib.contextmanager
def temporary_folder(prefix: str) -> Iterator[Path]:
    """A new private folder, removed when the block ends (or by the exit, if the process stops first)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    with _lock:
        _in_use.add(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with _lock:
            _in_use.discard(folder)


def kept_folder(prefix: str, root: Optional[str] = None) -> Path:
    """A new private folder (inside `root`, default the system temp) that lives until `serving()` ends."""
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    with _lock:
        _kept.add(folder)
    return folder


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """Serve inside this block: SIGTERM interrupts like SIGINT, and leaving the block (however
    it ends) stops what is in flight and removes this process's folders; after begin(), the
    process is gone by its deadline."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        clean_up()
        _exit_by_deadline()


def begin(timeout: float) -> float:
    """The server starts to stop: admit nothing new, stop downloads, be gone within `timeout`
    seconds. Returns the deadline (time.monotonic()); a second call keeps the first deadline."""
    global deadline
    with _lock:
        if deadline is None:
            deadline = time.monotonic() + timeout
    stopping.set()
    return deadline


def time_left() -> float:
    """Seconds until the deadline (infinite when no server began to stop)."""
    return math.inf if deadline is None else max(0.0, deadline - time.monotonic())


def clean_up(wait: float = RELEASE_WAIT_S) -> None:
    """Stop in-flight work, give it `wait` seconds (at most what is left of the deadline) to
    remove its own folders, then remove whatever this process made that is still there."""
    stopping.set()
    removing.set()
    until = time.monotonic() + min(wait, time_left())
    while _in_use and time.monotonic() < until:
        time.sleep(0.05)
    with _lock:
        folders = _in_use | _kept
        _kept.clear()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _exit_by_deadline() -> None:
    """Python waits for its threads before exiting: one still decoding (work that did not fit in
    the deadline) would keep the process alive. A watchdog ends it at the deadline instead, once
    the folders are gone; a process whose threads are done exits before, the usual way."""
    if deadline is None:
        return

    def leave() -> None:
        logging.getLogger(__name__).warning("work still running at the shutdown deadline was abandoned")
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    watchdog = threading.Timer(time_left(), leave)
    watchdog.daemon = True
    watchdog.start()
