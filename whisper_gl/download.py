"""Fetch the audio of one video or media link with yt-dlp, and nothing else.

The YouTube app hands a stranger's URL to a server-side fetcher, so everything is checked
before any byte is downloaded: only http(s) links, one video (no playlists), no host that
resolves to a loopback/private/link-local/reserved address (an open fetcher inside a Space
is an SSRF hole), and duration/size caps read from yt-dlp's metadata. A plain media URL
has no duration until it is downloaded, so the cap is checked again with ffprobe. The
download lives in a temporary folder that is removed when the caller is done.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

from . import WhisperGLError
from .audio import probe_duration

logger = logging.getLogger(__name__)

ALLOW_PRIVATE_ENV = "WHISPER_GL_ALLOW_PRIVATE_URLS"
COOKIES_ENV = "WHISPER_GL_YTDLP_COOKIES"
SOCKET_TIMEOUT_S = 15  # an unreachable host fails in seconds, not minutes

BOT_CHECK_MESSAGE = (
    "YouTube refused this server ('Sign in to confirm you're not a bot'): it blocks "
    f"datacenter addresses. The app owner can set the {COOKIES_ENV} secret to a cookies.txt "
    "exported from a browser logged in to YouTube (see the README)."
)


class DownloadError(WhisperGLError):
    """The link cannot or may not be downloaded; the message says why, in one line."""


def private_urls_allowed() -> bool:
    """Whether WHISPER_GL_ALLOW_PRIVATE_URLS=1 lifts the SSRF guard (tests serve media from 127.0.0.1)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in {"1", "true", "yes"}


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
        raise DownloadError(f"could not reach {host}: no such host (check the link)") from None
    if private_urls_allowed():
        return
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:127.0.0.1 is 127.0.0.1
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast or ip.is_reserved:
            raise DownloadError(
                f"links to private or local addresses are not allowed ({host} is {ip})"
            )


@contextlib.contextmanager
def downloaded_audio(url: str, *, max_seconds: float, max_bytes: int) -> Iterator[Path]:
    """Download the audio of `url` into a temporary folder; yield the file; remove the folder.

    Raises DownloadError (a WhisperGLError) with a short reason for every refusal or failure.
    """
    import yt_dlp

    url = check_url(url)
    with tempfile.TemporaryDirectory(prefix="whisper-gl-download-") as folder:
        folder = Path(folder)
        options = _ydl_options(folder, max_bytes)
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                # Metadata first: refuse long, huge, live or multi-video links before downloading.
                info = ydl.extract_info(url, download=False)
                _check_info(info, max_seconds=max_seconds, max_bytes=max_bytes)
                ydl.process_ie_result(info, download=True)
        except yt_dlp.utils.DownloadError as error:
            raise DownloadError(_explain(str(error), url)) from None
        audio = _downloaded_file(folder, max_bytes)
        # A plain media link has no duration in its metadata: measure what arrived.
        check_media_limits(audio, max_seconds=max_seconds, max_bytes=max_bytes)
        yield audio


def check_media_limits(path: Path, *, max_seconds: float, max_bytes: float) -> None:
    """Refuse a local media file (upload, recording or download) that is too big or too long.

    The duration is read from the container by ffprobe, so nothing is decoded yet; a file
    ffprobe cannot read raises whisper_gl.audio.AudioError with its reason.
    """
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise WhisperGLError(_too_big(size, max_bytes))
    seconds = probe_duration(path)
    if seconds > max_seconds:
        raise WhisperGLError(_too_long(seconds, max_seconds))


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


def _check_info(info: dict, *, max_seconds: float, max_bytes: int) -> None:
    if info.get("_type") in {"playlist", "multi_video"} or info.get("entries") is not None:
        raise DownloadError("this link holds several videos: paste the link of a single video")
    if info.get("is_live") or info.get("live_status") in {"is_live", "is_upcoming"}:
        raise DownloadError("live streams cannot be transcribed: wait for the recording")
    duration = info.get("duration")
    if duration and duration > max_seconds:
        raise DownloadError(_too_long(duration, max_seconds))
    formats = info.get("requested_formats") or [info]
    size = sum(f.get("filesize") or f.get("filesize_approx") or 0 for f in formats)
    if size > max_bytes:
        raise DownloadError(_too_big(size, max_bytes))
    # The extractor may have followed redirects: the media itself must be public too.
    for media in formats:
        if media.get("url"):
            parts = urlsplit(media["url"])
            if parts.scheme in {"http", "https"} and parts.hostname:
                check_host(parts.hostname, parts.port or 443)


def _downloaded_file(folder: Path, max_bytes: int) -> Path:
    files = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("audio.")
             and not p.name.endswith((".part", ".ytdl"))]
    if not files:
        # yt-dlp skips (without raising) a file whose announced size exceeds max_filesize.
        raise DownloadError(f"nothing was downloaded: the file may be larger than the {max_bytes / 1e6:.3g} MB limit")
    return max(files, key=lambda p: p.stat().st_size)


def _too_long(seconds: float, max_seconds: float) -> str:
    return f"this media lasts {_span(seconds)}; the limit is {_span(max_seconds)}"


def _too_big(size: float, max_bytes: float) -> str:
    return f"this media is {size / 1e6:.3g} MB; the limit is {max_bytes / 1e6:.3g} MB"


def _span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{round(seconds / 60, 1):g} min"


def _explain(message: str, url: str) -> str:
    """Turn a yt-dlp error into one human line (the full text goes to the server log)."""
    logger.warning("yt-dlp failed for %s: %s", url, message)
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
    if any(sign in text for sign in ("timed out", "connection refused", "name or service not known",
                                     "unable to download", "failed to resolve", "unreachable")):
        return f"could not reach {urlsplit(url).hostname} (the site is down or the link is wrong)"
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
