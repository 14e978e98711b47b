"""Fetch the audio of one video or media link with yt-dlp, and nothing else.

The YouTube app hands a stranger's URL to a server-side fetcher, so:

- the link is checked before any network access: http(s) only, one video (no playlists), a
  host that resolves to public addresses only (a name that does not resolve is told apart from
  a server that cannot resolve any: "check the link" against "this server has no network");
- every connection the download makes (the link, each redirect, playlist and segment URLs,
  whatever library opens it) is checked again when it is opened, on the address actually
  dialled: an audit hook (PEP 578) on `socket.connect` refuses a private address before any
  packet leaves, so neither a redirect, an HLS playlist nor DNS rebinding can reach one, and
  the message is the same whether the private URL exists or not;
- every byte received (pages, playlists, media) counts against the size cap as it arrives,
  under an overall deadline and a minimum average rate; a watchdog cuts the connections of
  a download that overruns, even one blocked on a server that trickles;
- yt-dlp runs its own downloaders only: no ffmpeg, whose connections would escape the guard;
- the download lives in a private temporary folder, removed at once on failure, when the
  caller is done, and at shutdown.

yt-dlp's metadata is read first, so long, huge, live or multi-video links are refused before
the media is fetched; the duration cap itself is enforced when the file is decoded
(whisper_gl.audio.read_audio), whatever the metadata said.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from . import WhisperGLError, shutdown
from .config import COOKIES_ENV, MediaLimits
from .paths import install_command

try:
    import yt_dlp
    from yt_dlp.networking.exceptions import HTTPError
except ImportError:  # the core install: links are the youtube extra's
    raise WhisperGLError(f"media links need the youtube extra: {install_command('youtube')}") from None

logger = logging.getLogger(__name__)

# "1" lifts the private-address guard; "127.0.0.1:8000,10.0.0.5" lifts it for those addresses only.
ALLOW_PRIVATE_ENV = "WHISPER_GL_ALLOW_PRIVATE_URLS"
SOCKET_TIMEOUT_S = 15  # an unreachable host fails in seconds, not minutes
PRIVATE_REFUSAL = "links to private or local addresses are not allowed"
# Names any working resolver answers: when none of them resolves either, the server has no
# network (or no DNS), and the link may well be right.
REFERENCE_HOSTS = ("www.youtube.com", "www.wikipedia.org")
WATCH_INTERVAL_S = 0.25
_READ_PIECE = 1 << 16

BOT_CHECK_MESSAGE = (
    "YouTube refused this server ('Sign in to confirm you're not a bot'): it blocks "
    f"datacenter addresses. The app owner can set the {COOKIES_ENV} secret to a cookies.txt "
    "exported from a browser logged in to YouTube (see the README)."
)


class DownloadError(WhisperGLError):
    """The link cannot or may not be downloaded; the message says why, in one line."""


def private_urls_allowed() -> bool:
    """Whether WHISPER_GL_ALLOW_PRIVATE_URLS=1 lifts the SSRF guard for every address."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in {"1", "true", "yes"}


def is_refused(address: str, port: int) -> bool:
    """Whether a connection to `address` (an IP) must be refused: anything but a public
    unicast address, unless WHISPER_GL_ALLOW_PRIVATE_URLS allows all or names it (ip or ip:port)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast and not ip.is_reserved:
        return False
    if private_urls_allowed():
        return False
    allowed = {entry.strip() for entry in os.environ.get(ALLOW_PRIVATE_ENV, "").split(",")}
    return not allowed & {str(ip), f"{ip}:{port}", f"[{ip}]:{port}"}


def check_url(url: str) -> str:
    """Refuse what must never be fetched, before any network access; return the cleaned URL."""
    url = (url or "").strip()
    if not url:
        raise DownloadError("paste a link to a video or an audio file")
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise DownloadError("only http:// and https:// links can be transcribed")
    if not parts.hostname:
        raise DownloadError("this link has no host name")
    if _is_playlist(parts):
        raise DownloadError("this is a playlist: paste the link of a single video")
    check_host(parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80))
    return url


def _is_playlist(parts) -> bool:
    # youtube.com/playlist?list=..., or any link that names a list but no video in it.
    # (watch?v=X&list=Y is one video: yt-dlp's noplaylist option keeps it to X.)
    query = parse_qs(parts.query)
    return parts.path.rstrip("/").endswith("/playlist") or ("list" in query and "v" not in query)


def check_host(host: str, port: int) -> None:
    """Resolve `host` and refuse it when any of its addresses is not a public one."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError, OSError):
        if not server_resolves_names(skip=host):
            raise DownloadError(f"could not reach {host}: {NO_NETWORK}") from None
        raise DownloadError(f"could not reach {host}: no such host (check the link)") from None
    for address in sorted(addresses):
        if is_refused(address, port):
            raise DownloadError(f"{PRIVATE_REFUSAL} ({host} is {address.split('%', 1)[0]})")


NO_NETWORK = ("this server cannot reach the internet right now (it cannot look up any site), so the link "
              "may well be right: try again later")


def server_resolves_names(skip: str = "") -> bool:
    """Whether this server's resolver answers for well-known sites (REFERENCE_HOSTS, `skip` left out)."""
    for reference in REFERENCE_HOSTS:
        if reference == skip.lower().rstrip("."):
            continue
        with contextlib.suppress(socket.gaierror, UnicodeError, OSError):
            socket.getaddrinfo(reference, 443, proto=socket.IPPROTO_TCP)
            return True
    return False


@contextlib.contextmanager
def downloaded_audio(url: str, limits: MediaLimits) -> Iterator[Path]:
    """Download the audio of `url` into a private temporary folder; yield the file; remove the folder.

    Raises DownloadError (a WhisperGLError) with a short reason for every refusal or failure.
    """
    url = check_url(url)
    _install_connect_guard()
    with shutdown.temporary_folder("whisper-gl-download-") as folder:
        guard = _DownloadGuard(limits)
        context = _GUARD.set(guard)
        try:
            with _GuardedYoutubeDL(_ydl_options(folder, limits.max_bytes), guard) as ydl:
                # Metadata first: refuse long, huge, live or multi-video links before downloading.
                info = ydl.extract_info(url, download=False)
                _check_info(info, limits)
                ydl.process_ie_result(info, download=True)
        except Exception as error:  # noqa: BLE001 - the guard's reason wins over how yt-dlp wrapped it
            if guard.failure:
                raise guard.failure from None
            if isinstance(error, yt_dlp.utils.DownloadError):
                raise DownloadError(_explain(str(error), url)) from None
            raise
        finally:
            guard.finish()
            _GUARD.reset(context)
        if guard.failure:  # e.g. a refused segment that yt-dlp chose to skip
            raise guard.failure
        yield _downloaded_file(folder, limits)


# --- the guard on every connection and every byte ----------------------------------------------

class _DownloadGuard:
    """One download's rules: which addresses it may connect to, how many bytes it may receive,
    for how long and how slowly. The first broken rule is its `failure`; from then on every
    connection is refused and every open one is cut, so yt-dlp stops wherever it was."""

    def __init__(self, limits: MediaLimits):
        self.limits = limits
        self.started = time.monotonic()
        self.received = 0
        self.failure: DownloadError | None = None
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []  # duplicates, to cut a blocked read
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="download-watchdog").start()

    def connecting(self, sock: socket.socket, address) -> None:
        """The audit hook's check, before `sock` connects to `address`."""
        self.check()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise self.fail(PRIVATE_REFUSAL)
        host, port = address[0], address[1]
        try:
            refused = is_refused(host, port)
        except ValueError:  # a name, not an address: it would be resolved again, after this check
            refused = True
        if refused:
            logger.warning("download: refused a connection to %s port %s", host, port)
            raise self.fail(PRIVATE_REFUSAL)
        with self._lock:
            self._connections.append(sock.dup())

    def metered(self, read: Callable[..., bytes]) -> Callable[..., bytes]:
        """`read` that counts what it returns against the size cap (read() to the end reads in
        pieces, so an endless body is stopped at the cap, not held in memory)."""

        def counted(amount: int | None = None, *args) -> bytes:
            if amount is None or amount < 0:
                return b"".join(iter(lambda: counted(_READ_PIECE), b""))
            data = read(amount, *args)
            self.received += len(data)
            if self.received > self.limits.max_bytes:
                raise self.fail(self.limits.too_big())
            self.check()
            return data

        return counted

    def check(self) -> None:
        if self.failure:
            raise self.failure
        overrun = self._overrun()
        if overrun:
            raise self.fail(overrun)

    def fail(self, message: str) -> "DownloadError":
        """Record the first broken rule and cut every connection; returns the error to raise."""
        with self._lock:
            if self.failure is None:
                self.failure = DownloadError(message)
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        return self.failure

    def finish(self) -> None:
        self._done.set()
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def _overrun(self) -> str | None:
        if shutdown.stopping.is_set():
            return "the server is shutting down: try again in a minute"
        elapsed = time.monotonic() - self.started
        if elapsed > self.limits.download_seconds:
            return f"the download took longer than {self.limits.download_seconds:g} s: the site is too slow"
        if elapsed > self.limits.rate_grace_seconds and self.received / elapsed < self.limits.min_download_rate:
            return f"the site sends too slowly (under {self.limits.min_download_rate / 1000:g} kB/s)"
        return None

    def _watch(self) -> None:
        while not self._done.wait(WATCH_INTERVAL_S):
            overrun = self._overrun()
            if overrun:
                self.fail(overrun)
                return


# The guard of the download running in this context (a thread's yt-dlp calls run in its context).
_GUARD: contextvars.ContextVar[_DownloadGuard | None] = contextvars.ContextVar("whisper_gl_download", default=None)
_hook_lock = threading.Lock()
_hook_installed = False


def _install_connect_guard() -> None:
    """Install the audit hook once per process; it acts only inside a download."""
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_on_audit_event)
            _hook_installed = True


def _on_audit_event(event: str, args: tuple) -> None:
    if event == "socket.connect":
        guard = _GUARD.get()
        if guard is not None:
            guard.connecting(*args)


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """yt-dlp whose every response (pages, playlists, media, error bodies) is metered."""

    def __init__(self, params: dict, guard: _DownloadGuard):
        self.guard = guard
        super().__init__(params)

    def urlopen(self, req):
        self.guard.check()
        try:
            response = super().urlopen(req)
        except HTTPError as error:
            error.response.read = self.guard.metered(error.response.read)
            raise
        response.read = self.guard.metered(response.read)
        return response


def _ydl_options(folder: Path, max_bytes: int) -> dict:
    options = {
        "format": "bestaudio/best",  # audio only when the site offers it separately
        "outtmpl": {"default": str(folder / "audio.%(ext)s")},
        "noplaylist": True,
        "max_filesize": max_bytes,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retries": 1,
        "fragment_retries": 1,
        "extractor_retries": 0,
        # Every connection must pass the guard, which follows this thread: fragments are fetched
        # here one by one, directly (no proxy), by yt-dlp itself (native downloaders only, and no
        # ffmpeg to fall back on: it would open connections the guard never sees).
        "concurrent_fragment_downloads": 1,
        "skip_unavailable_fragments": False,
        "proxy": "",
        "external_downloader": {"default": "native"},
        "ffmpeg_location": str(folder / "no-ffmpeg"),
        "fixup": "never",
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtDlpLogger(),
        "js_runtimes": {"deno": _deno_config()},
    }
    cookies = _cookies_file(folder)
    if cookies:
        options["cookiefile"] = str(cookies)
    return options


def _deno_config() -> dict:
    # YouTube's signature challenge needs yt-dlp-ejs plus a JS runtime; the `deno` PyPI
    # package ships the binary. Point yt-dlp at it explicitly: on a Space the venv's bin/
    # is not necessarily on PATH.
    try:
        import deno

        return {"path": deno.find_deno_bin()}
    except (ImportError, FileNotFoundError):
        return {}  # yt-dlp searches PATH itself


def _cookies_file(folder: Path) -> Path | None:
    """The cookies from WHISPER_GL_YTDLP_COOKIES, copied into the download folder.

    The variable holds either a path to a Netscape cookies.txt or, as a Space secret does,
    the file's content. yt-dlp writes cookies back when it closes, so it gets a private copy
    (removed with the folder) and the secret itself is never modified.
    """
    value = os.environ.get(COOKIES_ENV, "").strip()
    if not value:
        return None
    copy = folder / "cookies.txt"
    if "\t" in value or value.startswith("# "):  # the content itself
        copy.write_text(value + "\n", encoding="utf-8")
    elif Path(value).is_file():
        shutil.copyfile(value, copy)
    else:
        raise DownloadError(f"{COOKIES_ENV} is set but is neither a cookies.txt file nor its content")
    return copy


def _check_info(info: dict, limits: MediaLimits) -> None:
    """Refuse from yt-dlp's metadata what is known to be too much before downloading it."""
    if info.get("_type") in {"playlist", "multi_video"} or info.get("entries") is not None:
        raise DownloadError("this link holds several videos: paste the link of a single video")
    if info.get("is_live") or info.get("live_status") in {"is_live", "is_upcoming"}:
        raise DownloadError("live streams cannot be transcribed: wait for the recording")
    duration = info.get("duration")
    if duration and duration > limits.max_seconds:
        raise DownloadError(limits.too_long(duration))
    formats = info.get("requested_formats") or [info]
    size = sum(f.get("filesize") or f.get("filesize_approx") or 0 for f in formats)
    if size > limits.max_bytes:
        raise DownloadError(limits.too_big(size))


def _downloaded_file(folder: Path, limits: MediaLimits) -> Path:
    files = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("audio.")
             and not p.name.endswith((".part", ".ytdl"))]
    if not files:
        # yt-dlp skips (without raising) a file whose announced size exceeds max_filesize.
        raise DownloadError(f"nothing was downloaded: the file may be larger than the "
                            f"{limits.max_bytes / 1e6:.3g} MB limit")
    return max(files, key=lambda p: p.stat().st_size)


def _explain(message: str, url: str) -> str:
    """Turn a yt-dlp error into one human line (the full text goes to the server log)."""
    logger.warning("yt-dlp failed for %r: %r", url, message)  # as escapes: a link cannot forge a log line
    text = message.lower()
    if "confirm you" in text and "bot" in text:
        return BOT_CHECK_MESSAGE
    if "unsupported url" in text:
        return "no video or audio was found at this link"
    if "private video" in text or "video unavailable" in text or "members-only" in text:
        return "this video is unavailable (private, removed or restricted)"
    status = re.search(r"HTTP Error (\d+)", message)
    if status:
        return f"the site answered HTTP {status.group(1)} for this link"
    host = urlsplit(url).hostname
    if "network is unreachable" in text or (("resolve" in text or "name or service" in text)
                                            and not server_resolves_names(skip=host or "")):
        return f"could not reach {host}: {NO_NETWORK}"
    if any(sign in text for sign in ("timed out", "connection refused", "name or service not known",
                                     "unable to download", "failed to resolve", "unreachable")):
        return f"could not reach {host} (the site is down or the link is wrong)"
    return "could not download audio from this link"


class _YtDlpLogger:
    """Route yt-dlp's chatter to logging instead of the server's stdout."""

    def debug(self, message: str) -> None:
        logger.debug(message)

    def info(self, message: str) -> None:
        logger.debug(message)

    def warning(self, message: str) -> None:
        logger.info(message)

    def error(self, message: str) -> None:
        logger.info(message)
