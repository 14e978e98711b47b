"""A clean exit for the servers (the apps, and any other door that serves the engine).

    with serving():                       # SIGTERM now stops the server the way Ctrl-C does
        cache = kept_folder("whisper-gl-app-")
        ...serve...
    # on the way out: in-flight downloads stopped, every folder made here removed

Docker, systemd and Spaces stop a process with SIGTERM, which by default kills Python
without running any cleanup. Inside `serving()` SIGTERM raises KeyboardInterrupt in the main
thread like SIGINT, so the web server shuts down its own way; then `stopping` is set (a
download in flight notices it at its next read and unwinds), and every folder this process
made with `temporary_folder` or `kept_folder` is removed. Only those: files of other
processes in a shared temporary folder are never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

# Set once the process is shutting down: long work checks it and stops.
stopping = threading.Event()
# How long the exit waits for in-flight work to give back its temporary folders.
RELEASE_WAIT_S = 5.0

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
    it ends) stops what is in flight and removes this process's folders."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        clean_up()


def clean_up(wait: float = RELEASE_WAIT_S) -> None:
    """Stop in-flight work, give it `wait` seconds to remove its own folders, then remove
    whatever this process made that is still there."""
    stopping.set()
    deadline = time.monotonic() + wait
    while _in_use and time.monotonic() < deadline:
        time.sleep(0.05)
    with _lock:
        folders = _in_use | _kept
        _kept.clear()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
