"""The three Gradio apps, launched and called through gradio_client with the real engine
(offline Whisper base): transcripts, subtitles, bad input of every kind, load and cleanup,
and hostile input as a public Space meets it (files that lie about their length, links into
private networks, endless or trickling downloads, floods of uploads, SIGTERM)."""

import contextlib
import functools
import itertools
import os
import re
import signal
import socket
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.support import (assert_same_audio, ffmpeg, internal_and_hostile_sites, launched_app, memory_mb,
                           reset_peak_memory, serve_folder)
from whisper_gl.config import MediaLimits
from whisper_gl.download import ALLOW_PRIVATE_ENV

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
# Small caps so that ordinary example files exceed them.
FILE_APP = dict(max_mb=0.5, max_minutes=1.0)
YOUTUBE_APP = dict(max_mb=5.0, max_minutes=1.0, max_download_seconds=8.0)
# What one hostile request may add to the server's peak memory, at the 1-minute cap (decoding
# the hostile files whole took a process peak of 0.4 to 2.5 GB).
MEMORY_BOUND_MB = 200
# How long a hostile request may take to be answered (they take 0.2 to 3.4 s, and the trickling
# link 8 s: its download deadline; the margin is for a machine shared with other jobs).
ANSWER_SECONDS = 30


def client(url: str, tmp: Path) -> Client:
    return Client(url, verbose=False, download_files=str(tmp))


@pytest.fixture(scope="module")
def short_clip(examples_dir):
    """Resources/examples/short.mp3 and the sentence it speaks."""
    return examples_dir / "short.mp3", (examples_dir / "short.txt").read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def file_app(serve_app, tmp_path_factory):
    return client(serve_app("file", **FILE_APP), tmp_path_factory.mktemp("file-app"))


@pytest.fixture(scope="module")
def youtube_app(serve_app, tmp_path_factory):
    return client(serve_app("youtube", **YOUTUBE_APP), tmp_path_factory.mktemp("youtube-app"))


@pytest.fixture(scope="module")
def media_server(examples_dir):
    """Resources/examples over HTTP on 127.0.0.1, as a stand-in for a media site."""
    with serve_folder(examples_dir) as url:
        yield url


def check_good_request(app: Client, value, source: Path, assert_engine_text) -> str:
    """The app answers `value` (an upload or a link to `source`) with the engine's own transcript of `source`."""
    text, _, _ = app.predict(value, api_name="/transcribe")
    assert_engine_text(text, source)
    return text


# --- the three apps -------------------------------------------------------------------

def test_file_app_transcribes_an_upload_with_subtitles_and_timing(file_app, short_clip, assert_engine_text):
    clip, _ = short_clip
    text, srt_path, timing = file_app.predict(handle_file(clip), api_name="/transcribe")

    assert_engine_text(text, clip)
    srt = Path(srt_path).read_text(encoding="utf-8")
    cues = re.findall(r"^\d+\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$", srt, re.M)
    assert cues, srt
    assert " ".join(cue[2].strip() for cue in cues) == text
    assert cues[0][0] < cues[-1][1] <= "00:00:04,000"  # short.mp3 lasts 3.6 s
    assert Path(srt_path).name == "short.srt"
    assert re.search(r"Audio 3\.\d s · transcribed in \d+\.\d s \(\d+\.\d\d× real time\) · file read in "
                     r"\d+\.\d s · backend ctranslate2 · language gl", timing), timing


def test_microphone_app_transcribes_a_browser_recording(serve_app, sample_corpus_dir, tmp_path, assert_engine_text):
    # Browsers record WebM/Opus, and the upload may well be named .wav.
    first = (sample_corpus_dir / "test.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    recording = tmp_path / "recording.wav"
    ffmpeg("-i", str(sample_corpus_dir / "clips" / first[1]), "-c:a", "libopus", "-f", "webm", str(recording))
    microphone_app = client(serve_app("microphone"), tmp_path)

    check_good_request(microphone_app, handle_file(recording), recording, assert_engine_text)


def test_youtube_app_downloads_with_yt_dlp_and_cleans_up(
        youtube_app, media_server, short_clip, monkeypatch, assert_engine_text):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")  # the media server is on 127.0.0.1
    downloads = Path(tempfile.gettempdir())
    before = set(downloads.glob("whisper-gl-download-*"))
    clip, _ = short_clip

    text, srt_path, timing = youtube_app.predict(f"{media_server}/short.mp3", api_name="/transcribe")

    assert_engine_text(text, clip)  # the download is the file's bytes
    assert Path(srt_path).read_text(encoding="utf-8").startswith("1\n00:00:")
    assert "language gl" in timing
    assert set(downloads.glob("whisper-gl-download-*")) == before  # the download is gone


# --- bad input: a short message, and the app answers the next good request --------------

def _truncated(source: Path, target: Path, size: int) -> None:
    target.write_bytes(source.read_bytes()[:size])


BAD_FILES = {
    # name: (make the file from short.mp3 / long.mp3, message shown)
    "empty": (lambda short, long, out: out.write_bytes(b""), "empty"),
    "text renamed .wav": (lambda short, long, out: out.write_text("not audio at all\n"), "not an audio file"),
    "truncated mp3": (lambda short, long, out: _truncated(short, out, 300), "could not decode"),
    "0.1 s of audio": (lambda short, long, out: ffmpeg("-i", str(short), "-t", "0.1", str(out)), "no speech"),
    "silence": (lambda short, long, out: ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3",
                                                str(out)), "no speech"),
    "over the size cap": (lambda short, long, out: out.write_bytes(long.read_bytes()), r"the limit is 0\.5 MB"),
    "over the duration cap": (lambda short, long, out: ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=300:duration=70", "-b:a", "16k", str(out)), r"limit is 1 min"),
}
SUFFIX = {"text renamed .wav": ".wav", "0.1 s of audio": ".wav", "silence": ".wav", "empty": ".wav"}


@pytest.mark.parametrize("case", BAD_FILES)
def test_file_app_refuses_bad_input_and_keeps_serving(case, file_app, short_clip, examples_dir, tmp_path,
                                                      assert_engine_text):
    make, message = BAD_FILES[case]
    bad = tmp_path / f"upload{SUFFIX.get(case, '.mp3')}"
    make(short_clip[0], examples_dir / "long.mp3", bad)

    started = time.monotonic()
    with pytest.raises(AppError, match=message) as refused:
        file_app.predict(handle_file(bad), api_name="/transcribe")
    assert "Traceback" not in str(refused.value) and len(str(refused.value)) < 120
    assert time.monotonic() - started < 30

    check_good_request(file_app, handle_file(short_clip[0]), short_clip[0], assert_engine_text)


def test_file_app_transcribes_what_a_cut_mp3_holds_and_says_it_was_cut(file_app, short_clip, tmp_path):
    cut = tmp_path / "cut.mp3"
    _truncated(short_clip[0], cut, short_clip[0].stat().st_size * 3 // 10)  # the first 30 % of its bytes

    text, _, timing = file_app.predict(handle_file(cut), api_name="/transcribe")

    assert text.strip()
    seconds = float(re.search(r"Audio (\d+\.\d) s", timing).group(1))
    assert 0.5 < seconds < 3.0  # the part that arrived, not the 3.6 s the header announces
    assert re.search(rf"only {seconds:.1f} s of the 3\.\d s this file announces could be decoded", timing), timing


def test_an_internal_failure_is_a_generic_message_and_logged(file_app, base_transcriber, short_clip, monkeypatch,
                                                            caplog, assert_engine_text):
    def crash(audio):
        raise RuntimeError("decoder state corrupted at 0x7f3a")

    monkeypatch.setattr(base_transcriber, "transcribe", crash)  # a fault inside the real engine
    with pytest.raises(AppError) as refused:
        file_app.predict(handle_file(short_clip[0]), api_name="/transcribe")
    assert str(refused.value) == "could not transcribe this audio"  # no internals shown
    assert "decoder state corrupted" in caplog.text  # but the server log has them

    monkeypatch.undo()
    check_good_request(file_app, handle_file(short_clip[0]), short_clip[0], assert_engine_text)


def test_a_shutdown_during_a_transcription_is_a_clear_message(file_app, short_clip, monkeypatch, caplog):
    """The .srt is the last thing written: once SIGTERM has begun removing the cache, the user is
    told why instead of getting Gradio's bare "Error" (and the log gets no traceback)."""
    from whisper_gl import shutdown

    monkeypatch.setattr(shutdown.removing, "is_set", lambda: True)
    with pytest.raises(AppError) as refused:
        file_app.predict(handle_file(short_clip[0]), api_name="/transcribe")
    assert "shutting down" in str(refused.value)
    assert "Traceback" not in caplog.text and "transcription failed" not in caplog.text


BAD_LINKS = {
    "file:// URL": ("file:///etc/passwd", "only http"),
    "127.0.0.1 without the allow flag": ("{server}/short.mp3", "private or local addresses"),
    "playlist": ("https://www.youtube.com/playlist?list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf", "playlist"),
    "unreachable host": ("http://nonexistent.invalid/a.mp3", "could not reach nonexistent.invalid"),
    "missing file": ("{server}/nothing-here.mp3", "HTTP 404"),
    "over the duration cap (known only after download)": ("{server}/long.mp3", r"limit is 1 min"),
}


@pytest.mark.parametrize("case", BAD_LINKS)
def test_youtube_app_refuses_bad_links_and_keeps_serving(case, youtube_app, media_server, short_clip, monkeypatch,
                                                         assert_engine_text):
    link, message = BAD_LINKS[case]
    allowed = case not in {"127.0.0.1 without the allow flag"}
    if allowed:
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    else:
        monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)

    started = time.monotonic()
    with pytest.raises(AppError, match=message):
        youtube_app.predict(link.format(server=media_server), api_name="/transcribe")
    assert time.monotonic() - started < 20

    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    check_good_request(youtube_app, f"{media_server}/short.mp3", short_clip[0], assert_engine_text)


# --- hostile links: into private networks, endless, trickling ---------------------------------

@contextlib.contextmanager
def answered_within_bounds(case: str, pid: int | str = "self"):
    """The block (one hostile request) ends within ANSWER_SECONDS, and the server's peak memory
    grows by less than MEMORY_BOUND_MB meanwhile (the server runs in this process, or as `pid`)."""
    reset_peak_memory(pid)
    resident, _ = memory_mb(pid)
    started = time.monotonic()
    yield
    seconds, (_, peak) = time.monotonic() - started, memory_mb(pid)
    print(f"{case}: answered in {seconds:.1f} s, server peak memory +{peak - resident:.0f} MB")
    assert seconds < ANSWER_SECONDS
    assert peak - resident < MEMORY_BOUND_MB, f"{case}: server peak memory grew by {peak - resident:.0f} MB"


@pytest.fixture
def sites(monkeypatch):
    """tests.support.internal_and_hostile_sites, the hostile site's address the only private one
    allowed (it stands for a public host); the apps run in this process, so they see the variable."""
    with internal_and_hostile_sites() as (site, service, hits):
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, site.removeprefix("http://"))
        yield site, service, hits


HOSTILE_LINKS = {
    # link on the hostile site: the message (the same for a private URL that exists and one that does not)
    "/redirect.mp3": "^links to private or local addresses are not allowed$",
    "/exists.m3u8": "^links to private or local addresses are not allowed$",
    "/missing.m3u8": "^links to private or local addresses are not allowed$",
    "/endless.mp3": r"^this media is more than 5 MB; the limit is 5 MB$",
    "/trickle.mp3": r"^the download took longer than 8 s: the site is too slow$",
}


@pytest.mark.parametrize("link", HOSTILE_LINKS)
def test_youtube_app_refuses_hostile_links_within_bounds(link, youtube_app, sites, media_server, short_clip,
                                                         monkeypatch, assert_engine_text):
    site, _, internal_hits = sites
    downloads = set(Path(tempfile.gettempdir()).glob("whisper-gl-download-*"))
    with answered_within_bounds(link):
        with pytest.raises(AppError, match=HOSTILE_LINKS[link]):
            youtube_app.predict(f"{site}{link}", api_name="/transcribe")
    assert internal_hits == []  # nothing was fetched from the private address, not even a HEAD
    assert set(Path(tempfile.gettempdir()).glob("whisper-gl-download-*")) == downloads  # no partial file left

    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")  # the media server is on 127.0.0.1 too
    check_good_request(youtube_app, f"{media_server}/short.mp3", short_clip[0], assert_engine_text)


# --- hostile files: they lie about their length, or are not speech ----------------------------

def check_hostile_file(app: Client, path: Path, message: str, pid: int | str = "self") -> None:
    with answered_within_bounds(path.name, pid):
        with pytest.raises(AppError, match=message):
            app.predict(handle_file(path), api_name="/transcribe")


def test_microphone_app_refuses_a_2_hour_recording_without_duration(serve_app, hostile_media, short_clip, tmp_path,
                                                                     assert_engine_text):
    """A WebM as browsers record it (no duration field): refused once the cap is decoded,
    not decoded whole to measure it."""
    microphone_app = client(serve_app("microphone", max_minutes=1.0, max_mb=8.0), tmp_path)
    check_hostile_file(microphone_app, hostile_media["recording.webm"], "lasts more than 1 min; the limit is 1 min")
    check_good_request(microphone_app, handle_file(short_clip[0]), short_clip[0], assert_engine_text)


class Door:
    """`python app_file.py` as a Space runs it (1-minute cap, 8 MB uploads), in temporary folders
    of its own, next to files of another process that must survive its shutdown."""

    def __init__(self, url: str, server, folders: list[Path], foreign: list[Path], downloads: Path, log: Path):
        self.url, self.server, self.folders, self.foreign, self.log = url, server, folders, foreign, log
        self.app = client(url, downloads)

    def leftovers(self) -> list[Path]:
        return sorted(p for folder in self.folders for p in folder.rglob("*") if p.is_file() and p not in self.foreign)


@pytest.fixture(scope="module")
def door(base_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("door")
    folders = [root / "gradio", root / "tmp"]
    foreign = [folders[0] / "another-app-upload.wav", folders[1] / "another-process.tmp"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(folders[0]), "TMPDIR": str(folders[1]),
           "GRADIO_ANALYTICS_ENABLED": "False", "WHISPER_GL_MODEL": str(base_model_dir),
           "WHISPER_GL_MAX_MB": "8", "WHISPER_GL_MAX_MINUTES": "1"}
    # --host/--port as a user gives them (the same values launched_app puts in Gradio's variables);
    # temperature 0 only, as base_transcriber: without sampling, the same clip gets the same words.
    command = ["app_file.py", "--host", "127.0.0.1", "--port", "{port}", "--temperatures", "0"]
    with launched_app(command, REPO_ROOT, env, root / "server.log", startup_seconds=120) as (url, server):
        yield Door(url, server, folders, foreign, root / "downloads", root / "server.log")


@pytest.mark.timeout(300)
def test_file_app_door_under_load_stays_bounded(door, short_clip, tmp_path, assert_engine_text):
    """20 concurrent uploads all answered, memory bounded, oversized uploads refused at the door."""
    clip, _ = short_clip
    # warm up; the app's process writes what this process's engine (same model and settings) writes
    alone = check_good_request(door.app, handle_file(clip), clip, assert_engine_text)
    rss_before, _ = memory_mb(door.server.pid)

    started = time.monotonic()
    jobs = [door.app.submit(handle_file(clip), api_name="/transcribe") for _ in range(20)]
    results = [job.result(timeout=240) for job in jobs]

    rss_after, _ = memory_mb(door.server.pid)
    print(f"20 concurrent requests in {time.monotonic() - started:.1f} s; "
          f"server RSS {rss_before:.0f} -> {rss_after:.0f} MB")
    for text, srt_path, _ in results:  # every request answered, and answered as one request alone
        assert text == alone
        assert Path(srt_path).read_text(encoding="utf-8").startswith("1\n00:00:")
    assert rss_after < rss_before + 250, f"RSS grew from {rss_before:.0f} to {rss_after:.0f} MB"

    too_big = tmp_path / "big.mp3"
    too_big.write_bytes(os.urandom(8_500_000))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        door.app.predict(handle_file(too_big), api_name="/transcribe")


HOSTILE_FILES = {
    "chained.ogg": "lasts more than 1 min; the limit is 1 min",  # 60 min announcing 1 s
    "vbr.mp3": "lasts more than 1 min; the limit is 1 min",  # 120 s announcing 29 s
    "silence.ogg": "lasts more than 1 min; the limit is 1 min",  # 4 h of silence in 5.4 MB
    "recording.webm": "lasts more than 1 min; the limit is 1 min",  # 2 h without a duration field
    "noise.wav": "^no speech was heard in this audio$",
    "tone.wav": "^no speech was heard in this audio$",
}


@pytest.mark.parametrize("name", HOSTILE_FILES)
def test_file_app_door_refuses_hostile_files_within_bounds(name, door, hostile_media, short_clip, assert_engine_text):
    check_hostile_file(door.app, hostile_media[name], HOSTILE_FILES[name], door.server.pid)
    check_good_request(door.app, handle_file(short_clip[0]), short_clip[0], assert_engine_text)


@pytest.mark.timeout(120)
def test_file_app_door_stops_on_sigterm_and_leaves_no_file(door, short_clip):
    """What Docker, systemd and Spaces send: every file of the app goes (uploads, .srt files,
    a transcription in flight), the other process's files stay."""
    door.app.predict(handle_file(short_clip[0]), api_name="/transcribe")
    door.app.submit(handle_file(short_clip[0]), api_name="/transcribe")  # in flight at the signal
    assert door.leftovers()  # uploads and .srt files are there, until shutdown
    time.sleep(0.5)

    door.server.send_signal(signal.SIGTERM)
    assert door.server.wait(timeout=60) == 0
    assert door.leftovers() == []
    assert all(path.read_bytes() == b"not ours" for path in door.foreign)
    log = door.log.read_text()
    assert re.search(r"serving the file app at http://127\.0\.0\.1:\d+ \(model .*, loaded in \d+\.\d s, warmed "
                     r"up in \d+\.\d s\)", log), log
    assert "share=True" not in log and "Traceback" not in log  # no hint a command-line user cannot follow


# --- uploads no transcription claims -----------------------------------------------------------

def _store(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


@pytest.fixture
def guarded_file_app(base_transcriber, tmp_path, monkeypatch):
    """The file app in this process, served as `whisper-gl app file` serves it (app_server: the
    upload bounds; whisper_gl.webserver: the time bounds), on a cache folder of its own: 1 MB per
    upload, room for 3.5 MB and 6 files besides the examples copied at start."""
    from tests.support import serving_in_thread
    from whisper_gl.apps import app_server, build_app
    from whisper_gl.config import AppConfig

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    app = build_app("file", base_transcriber, AppConfig(max_mb=1.0, max_minutes=1.0))
    files, size = _store(cache)
    limits = MediaLimits(max_seconds=60, max_bytes=1_000_000, upload_store_bytes=size + 3_500_000,
                         upload_store_files=files + 6, upload_grace_seconds=2, min_upload_rate=1000)
    with serving_in_thread(app_server(app, limits, cache)) as url:
        yield url + "/", cache, limits


def _post(url: str, body: bytes, **headers) -> requests.Response:
    return requests.post(f"{url}gradio_api/upload", files={"files": ("upload.bin", body)}, headers=headers, timeout=30)


def _chunked_post(url: str, body: bytes) -> requests.Response:
    """An upload without Content-Length: its size is known only as it arrives."""
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="upload.bin"\r\n\r\n'
    return requests.post(f"{url}gradio_api/upload", data=iter([head, body, b"\r\n--b--\r\n"]), timeout=30,
                         headers={"Content-Type": "multipart/form-data; boundary=b"})


def test_uploads_are_bounded_in_size_count_and_total(guarded_file_app, short_clip, tmp_path, monkeypatch,
                                                     assert_engine_text):
    from whisper_gl import uploads

    url, cache, limits = guarded_file_app
    monkeypatch.setattr(uploads, "ORPHAN_AGE_S", 0.5)  # the leftover of a refused upload goes fast here
    # Over the size cap: refused before a byte is read when declared, as the cap is passed when not.
    assert _post(url, os.urandom(1_100_000)).status_code == 413
    assert _chunked_post(url, os.urandom(1_200_000)).status_code == 413
    time.sleep(0.6)
    # A flood of 0.99 MB uploads that no transcription claims: accepted while the store has room.
    assert [_post(url, os.urandom(990_000)).status_code for _ in range(4)] == [200, 200, 200, 503]
    assert _store(cache)[1] <= limits.upload_store_bytes
    # A real request still fits; then small uploads run into the count cap.
    check_good_request(client(url, tmp_path), handle_file(short_clip[0]), short_clip[0], assert_engine_text)
    room = limits.upload_store_files - _store(cache)[0]
    assert [_post(url, os.urandom(100)).status_code for _ in range(room + 2)] == [200] * room + [503, 503]
    assert _store(cache)[0] == limits.upload_store_files


def test_a_cut_upload_leaves_nothing_once_idle(guarded_file_app, monkeypatch, caplog):
    from whisper_gl import uploads

    url, cache, _ = guarded_file_app
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as connection:  # declares 500 kB, sends 100 kB, hangs up
        connection.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n"
                           b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\nContent-Disposition: "
                           b"form-data; name=\"files\"; filename=\"a\"\r\n\r\n" + os.urandom(100_000))
        time.sleep(0.5)
    time.sleep(0.5)
    orphans = [p for p in cache.iterdir() if p.is_file()]
    assert orphans  # Gradio keeps the half-written file
    monkeypatch.setattr(uploads, "ORPHAN_AGE_S", 0.1)
    time.sleep(0.2)
    assert _post(url, b"x" * 100).status_code == 200  # the next upload sweeps it away
    assert not any(p.exists() for p in orphans)
    assert "Exception in ASGI application" not in caplog.text  # a client hanging up is not our fault


def test_a_file_given_as_a_link_is_never_fetched(guarded_file_app, file_app, short_clip, tmp_path, monkeypatch,
                                                 assert_engine_text):
    """Gradio downloads a file payload whose path is a link before any handler runs (and relays
    any link asked for at /gradio_api/file=<link>), with no size or time limit. Gradio's own
    address check is lifted here so that a loopback server can stand for a public host: the
    unguarded app fetches from it; through the guard, no route of any event does."""
    import gradio.processing_utils
    import httpx
    import safehttpx

    from tests.support import send_media, serve_routes

    async def any_host(url):
        return await httpx.AsyncClient().get(url)

    async def public(host):
        return "127.0.0.1"

    monkeypatch.setattr(gradio.processing_utils, "async_ssrf_protected_get", any_host)
    monkeypatch.setattr(safehttpx, "async_validate_url", public)
    url, _, _ = guarded_file_app
    clip = short_clip[0]
    with serve_routes({"/clip.mp3": lambda handler: send_media(handler, clip.read_bytes())}) as (site, hits):
        link = handle_file(f"{site}/clip.mp3")
        with contextlib.suppress(AppError):
            file_app.predict(link, api_name="/transcribe")  # the unguarded app: Gradio fetches it
        assert hits == ["/clip.mp3"]
        guarded = client(url, tmp_path)
        with pytest.raises(httpx.HTTPStatusError) as refused:
            guarded.predict(link, api_name="/transcribe")
        assert refused.value.response.status_code == 400
        for route in ("call/transcribe", "run/transcribe", "call/v2/transcribe"):
            answer = requests.post(f"{url}gradio_api/{route}", json={"data": [{"x": [link]}]}, timeout=30)
            assert answer.status_code == 400 and "send files by upload" in answer.text, route
        assert requests.get(f"{url}gradio_api/file={site}/clip.mp3", timeout=30).status_code == 403
        too_big = requests.post(f"{url}gradio_api/queue/join", json={"data": ["x" * 1_100_000]}, timeout=30)
        assert too_big.status_code == 413
        assert hits == ["/clip.mp3"]  # nothing more
    check_good_request(guarded, handle_file(clip), short_clip[0], assert_engine_text)


# --- live captions: the microphone app's stream handlers, driven directly ---------------------------

PIECE_SECONDS = 0.5  # AppConfig.stream_every: what the browser uploads at a time


@pytest.fixture
def live_captions(base_transcriber, tmp_path):
    """factory(**AppConfig fields) -> LiveCaptions on the base model, Gradio's cache in tmp_path/cache."""
    from whisper_gl.apps import LiveCaptions
    from whisper_gl.config import AppConfig

    made = []

    def make(**settings) -> "LiveCaptions":
        made.append(LiveCaptions(base_transcriber, AppConfig(**settings), tmp_path / "cache"))
        return made[-1]

    yield make
    for captions in made:
        captions.pool.shutdown(wait=True)


def browser_pieces(source: Path, cache: Path, seconds: float | None = None) -> list[Path]:
    """`source` as Gradio's streaming microphone uploads it: 0.5 s 16-bit WAVs at 48 kHz, each
    cache/<hash>/audio.wav."""
    import soundfile

    from whisper_gl.audio import load_audio

    samples = load_audio(source, sampling_rate=48_000)[: round((seconds or 1e9) * 48_000)]
    step, paths = round(PIECE_SECONDS * 48_000), []
    for index, start in enumerate(range(0, len(samples), step)):
        path = cache / f"{source.stem}-{index:04d}-{uuid.uuid4().hex}" / "audio.wav"
        path.parent.mkdir(parents=True)
        soundfile.write(path, samples[start: start + step], 48_000, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.mark.model_output
@pytest.mark.ctranslate2
def test_live_captions_grow_while_speaking_and_stop_gives_the_full_transcript(live_captions, examples_dir, tmp_path,
                                                                              engine_calls, base_transcriber, monkeypatch):
    import soundfile

    from whisper_gl import apps
    from whisper_gl.config import LiveOptions
    from whisper_gl.streaming import live_transcript

    # A decode at every piece, as on a CPU that keeps up with the speaker: paced by their cost (the
    # default), decodes grow rarer on a loaded machine (none had agreed halfway at a load of 13 on 2
    # cores); pacing is the engine's own test (test_streaming.py). What the untuned base writes, and
    # when two decodes agree, depends on the CPU's int8 kernels: the captions are not counted but
    # compared with the engine's own live transcript of the same pieces, pushed the same way.
    monkeypatch.setattr(apps, "live_transcript", functools.partial(live_transcript, live=LiveOptions(paced=False)))
    captions = live_captions()
    pieces = browser_pieces(examples_dir / "long.mp3", tmp_path / "cache", seconds=12)
    samples = [soundfile.read(piece, dtype="float32") for piece in pieces]  # the app deletes each piece
    engine_live = live_transcript(base_transcriber, live=LiveOptions(paced=False), keep_audio=False)
    session, updates, shown = None, [], []
    for piece, (audio, rate) in zip(pieces, samples):
        html_text, session = captions.stream(str(piece), session)
        assert session.drained(timeout=60)  # as if decoding kept up with the speaker
        assert not piece.exists()  # each piece is deleted once read
        updates.append(session.update)
        shown.append(html_text)
        assert session.update == engine_live.push(audio, rate)  # the engine's words, at the same moment
    engine_live.close()
    confirmed = [""] + [update.confirmed for update in updates]
    assert all(now.startswith(before) for before, now in zip(confirmed, confirmed[1:]))  # confirmed only grows
    # Text while it is spoken (the untuned base writes something for 6 s of speech, whatever the words).
    assert any(update.text for update in updates[: len(updates) // 2])
    # The page shows the update it had when the piece arrived: the one before it (or this one, when
    # decoding was that quick), the confirmed text plain and the tentative tail apart.
    for before, after, text in zip(updates, updates[1:], shown[1:]):
        assert any(f'<span class="confirmed">{apps._escaped(update.confirmed)}</span><span class="tentative">'
                   f'{apps._escaped(update.text[len(update.confirmed):])}</span>' in text
                   for update in (before, after) if update.text) or not (before.text and after.text), text
    assert not list((tmp_path / "cache").rglob("*.wav"))

    live_text, transcript, srt_path, timing, state = captions.stop(session)

    assert (live_text, state) == ("", None)  # the full decode replaces the live captions
    # ...the engine's transcript of the whole recording: the 12 s of long.mp3 sent, 16-bit at 48 kHz
    (recording, result), = engine_calls
    assert_same_audio(recording, examples_dir / "long.mp3")
    assert transcript == result.text and transcript.strip()
    assert Path(srt_path).name == "recording.srt"
    assert Path(srt_path).read_text(encoding="utf-8").startswith("1\n00:00:")
    assert re.search(r"Audio 12\.\d s · transcribed in", timing), timing
    assert session.ended  # the transcript and its audio are let go


def test_live_recording_past_the_length_cap_says_so_and_keeps_what_came_before(live_captions, short_clip, tmp_path):
    import gradio as gr

    from whisper_gl.apps import CAP_GRACE_SECONDS

    captions = live_captions(max_minutes=0.05)  # 3 s; short.mp3 lasts 3.6 s
    session, shown = None, []
    for piece in browser_pieces(short_clip[0], tmp_path / "cache"):
        text, session = captions.stream(str(piece), session)
        shown.append(text)
    assert "the limit is 3 s" not in shown[5] and "the limit is 3 s" in shown[6]  # said as the 7th piece arrives
    assert session.drained(timeout=60)
    # Stop not pressed, the tab keeps sending: answered for CAP_GRACE_SECONDS, then the stream ends.
    for _ in range(round(CAP_GRACE_SECONDS / PIECE_SECONDS) - session.refused):  # the 8th piece was past it
        captions.stream(str(silent_piece(tmp_path / "cache")), session)
    with pytest.raises(gr.Error, match="the limit is 3 s"):
        captions.stream(str(silent_piece(tmp_path / "cache")), session)

    _, transcript, _, timing, _ = captions.stop(session)
    assert transcript.strip()
    assert "the limit is 3 s" in timing and re.search(r"Audio 3\.0 s", timing), timing  # the first 3 s


def silent_piece(cache: Path) -> Path:
    import soundfile

    path = cache / uuid.uuid4().hex / "audio.wav"
    path.parent.mkdir(parents=True)
    soundfile.write(path, np.zeros(round(PIECE_SECONDS * 48_000), dtype=np.float32), 48_000, subtype="PCM_16")
    return path


def test_two_live_recordings_at_once_keep_their_own_text_and_silence_gives_none(live_captions, short_clip, tmp_path,
                                                                              engine_calls):
    import gradio as gr

    captions = live_captions()
    silence = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "4", str(silence))
    speech, quiet = browser_pieces(short_clip[0], tmp_path / "cache"), browser_pieces(silence, tmp_path / "cache")
    speaker = listener = None
    for spoken, unspoken in itertools.zip_longest(speech, quiet):  # interleaved, as two tabs send them
        if spoken:
            _, speaker = captions.stream(str(spoken), speaker)
        if unspoken:
            _, listener = captions.stream(str(unspoken), listener)
    assert speaker is not listener and speaker.drained(60) and listener.drained(60)
    assert listener.update.confirmed == listener.update.tentative == ""  # no text invented on silence

    with pytest.raises(gr.Error, match="no speech"):
        captions.stop(listener)
    _, transcript, _, _, _ = captions.stop(speaker)
    recording, result = engine_calls[-1]  # the speaker's recording is short.mp3, and its text the engine's
    assert_same_audio(recording, short_clip[0])
    assert transcript == result.text and transcript.strip()


def test_closed_or_abandoned_live_recordings_release_their_audio(live_captions, base_transcriber, short_clip,
                                                                tmp_path):
    import gc
    import weakref

    import gradio as gr

    from whisper_gl.apps import LiveCaptions, build_app

    app = build_app("microphone", base_transcriber)
    assert [block.delete_callback for block in app.blocks.values() if isinstance(block, gr.State)] == \
        [LiveCaptions.release]  # what Gradio calls when it drops a tab's state
    captions = live_captions()
    pieces = browser_pieces(short_clip[0], tmp_path / "cache", seconds=2)
    sessions = []
    for piece in pieces:  # one tab after another records a little
        _, session = captions.stream(str(piece), None)
        session.drained(60)
        sessions.append(session)
    transcripts = [weakref.ref(session.live) for session in sessions]

    captions.release(sessions[0])  # Gradio drops a closed tab's state (gr.State's delete_callback)
    captions.idle_seconds = 0.0  # and the others have been quiet too long
    newest = captions.new_session()
    gc.collect()
    assert [ref() for ref in transcripts] == [None] * len(transcripts)
    assert set(captions.sessions) == {newest}
    with pytest.raises(Exception, match="expired: record again"):
        captions.stop(sessions[1])


def test_live_pieces_are_read_within_bounds_and_bad_ones_refused(live_captions, tmp_path):
    import gradio as gr
    import soundfile

    from whisper_gl.apps import MAX_CHUNK_SECONDS, _captions_html, _read_piece
    from whisper_gl.streaming import LiveUpdate

    captions, cache = live_captions(), tmp_path / "cache"
    not_audio = cache / "a" / "audio.wav"
    not_audio.parent.mkdir(parents=True)
    not_audio.write_text("not audio")
    with pytest.raises(gr.Error, match="could not be read"):
        captions.stream(str(not_audio), None)
    assert not not_audio.exists()

    long_piece = cache / "b" / "audio.wav"  # a client may send more than 0.5 s: read up to the bound
    long_piece.parent.mkdir(parents=True)
    soundfile.write(long_piece, np.zeros(48_000 * 60, dtype=np.float32), 48_000, subtype="PCM_16")
    samples, rate = _read_piece(str(long_piece), cache)
    assert (len(samples), rate) == (round(MAX_CHUNK_SECONDS * 48_000), 48_000)

    elsewhere = tmp_path / "audio.wav"  # a path outside Gradio's cache is read, never deleted
    soundfile.write(elsewhere, np.zeros(4_800, dtype=np.float32), 48_000)
    _read_piece(str(elsewhere), cache)
    assert elsewhere.exists()

    shown = _captions_html(LiveUpdate("<img src=x onerror=alert(1)>", "${alert(2)} {{x}}", "", 1.0))
    assert "<img" not in shown and "${" not in shown and "{{" not in shown
    with pytest.raises(gr.Error, match="record something first"):
        captions.stop(None)


def test_live_pieces_sent_faster_than_they_are_decoded_are_all_kept(live_captions, base_transcriber, short_clip,
                                                                   tmp_path, monkeypatch):
    """Gradio hands the stream handler only the latest piece: the handler must queue, not decode."""
    from whisper_gl import apps

    pushed = []  # samples per LiveTranscript.push

    def counted_stream(*args, real_stream=apps.live_transcript, **kwargs):
        live = real_stream(*args, **kwargs)
        real_push = live.push
        live.push = lambda samples, sampling_rate: pushed.append(len(samples)) or real_push(samples, sampling_rate)
        return live

    monkeypatch.setattr(apps, "live_transcript", counted_stream)  # where the app makes its live transcripts
    captions = live_captions()
    pieces = browser_pieces(short_clip[0], tmp_path / "cache")
    session = None
    for piece in pieces:  # no waiting: far faster than the decodes
        _, session = captions.stream(str(piece), session)
    assert session.drained(timeout=60)
    assert sum(pushed) == round(session.received * 48_000)  # every piece reached the transcript...
    assert session.update.seconds == pytest.approx(session.received, abs=0.05)
    assert len(pushed) < len(pieces)  # ...several in one push once decoding fell behind


# --- one spacing rule: the live captions are the engine's text --------------------------------------

SPOKEN = [" O", " vento", " sobra", " forte", " na", " costa", " da", " Morte."]


class SpeakingDecoder:
    """A stand-in engine that hears the sentence of the issue ("O vento sobra forte na costa da
    Morte."), a word per 0.4 s of the buffer, the word still being spoken left out; the live
    transcript's policy and voice-activity detector are the real ones."""

    backend, model = "stub", "stub"

    def __init__(self):
        from whisper_gl.window import PRETRAINED_WINDOW

        self.window = PRETRAINED_WINDOW

    def decoding_for(self, decoding=None, **settings):
        from whisper_gl.config import DecodingOptions

        return decoding or DecodingOptions(**settings)

    def decode_window(self, waveform, decoding, window=None):
        from whisper_gl.backends import Decoded
        from whisper_gl.transcript import Segment, Word

        heard = int((len(waveform) / 16_000 - 0.5) / 0.4)
        words = tuple(Word(i * 0.4, i * 0.4 + 0.35, text, 0.9) for i, text in enumerate(SPOKEN[:max(0, heard)]))
        return Decoded([Segment(0.0, words[-1].end, "".join(w.text for w in words).strip(), words)] if words else [],
                       "gl", predicted_timestamps=True)


def page_text(markup: str) -> str:
    """What a browser shows of an HTML fragment (its text, whitespace collapsed)."""
    from html.parser import HTMLParser

    parts: list[str] = []
    parser = HTMLParser()
    parser.handle_data = parts.append
    parser.feed(markup)
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def test_live_captions_are_spaced_by_the_engine_as_the_api_stream_is(short_clip, tmp_path):
    """The microphone app's captions, at every update of a live transcript of "O vento sobra forte na
    costa…", read as the engine joins the words (confirmed, then tentative), never glued at the
    boundary ("sobraforte"); the confirmed text is what the API stream's deltas add up to."""
    from whisper_gl.apps import LiveCaptions
    from whisper_gl.config import AppConfig

    captions = LiveCaptions(SpeakingDecoder(), AppConfig(), tmp_path / "cache")
    session, boundaries = None, set()
    try:
        for piece in browser_pieces(short_clip[0], tmp_path / "cache"):
            _, session = captions.stream(str(piece), session)
            assert session.drained(timeout=30)
            update = session.update
            shown = page_text(_captions_of(session))  # the captions as the page shows them
            assert shown == (update.text or f"Listening… {session.received:.0f} s"), (shown, update)
            if update.confirmed and update.tentative:
                boundaries.add(update.confirmed.split()[-1] + "|" + update.tentative.split()[0])
        session.live.close()
    finally:
        captions.pool.shutdown(wait=True)
    assert "sobra|forte" in boundaries or any(b.startswith("sobra|") for b in boundaries), boundaries
    assert "sobraforte" not in shown and "O vento sobra forte na costa" in session.live.text
    assert session.live.text == " ".join(word.strip() for word in SPOKEN[: len(session.live.words)])


def _captions_of(session) -> str:
    from whisper_gl.apps import _captions_html

    return _captions_html(session.update, session.received, session.error)


def test_captions_html_keeps_the_space_inside_the_tentative_span():
    from whisper_gl.apps import _captions_html
    from whisper_gl.streaming import LiveUpdate

    markup = _captions_html(LiveUpdate("O vento sobra", "forte na costa", "", 3.0))
    assert page_text(markup) == "O vento sobra forte na costa"
    assert '<span class="tentative"> forte' in markup  # the space is the engine's, not the page's


# --- the examples, the errors on the page --------------------------------------------------------

def test_the_examples_are_test_clips_never_training_ones(sample_corpus_dir):
    from whisper_gl.apps import KINDS

    def clips(split: str) -> set[str]:
        rows = (sample_corpus_dir / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        return {row.split("\t")[1] for row in rows}

    offered = {Path(example).name for example in KINDS["file"].examples() if "cv-corpus-sample" in example}
    assert len(offered) == 2 and offered <= clips("test") and not offered & (clips("train") | clips("dev"))


def test_the_page_shows_an_error_next_to_the_input_and_the_api_raises_it(file_app, tmp_path):
    """The page's handler answers an error as text for the box next to the input (it stays until the
    next action); the /transcribe endpoint, on the same handler, raises it for API clients."""
    from whisper_gl.apps import _shown_on_page

    def refuse(value):
        raise gr_error("this media lasts more than 1 min; the limit is 1 min <b>&</b>")

    shown = _shown_on_page(refuse, 3)("x")
    assert shown[:3] == (None, None, None)
    assert page_text(shown[3]) == "this media lasts more than 1 min; the limit is 1 min <b>&</b>"
    assert 'role="alert"' in shown[3] and "<b>" not in shown[3]  # escaped: shown as text
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio at all\n")
    with pytest.raises(AppError, match="not an audio file"):
        file_app.predict(handle_file(notes), api_name="/transcribe")


def gr_error(message: str):
    import html

    import gradio as gr

    return gr.Error(html.escape(message), print_exception=False)


def test_a_trickling_upload_is_refused_and_its_room_freed(guarded_file_app):
    """An upload sending a byte every 0.5 s is refused (408) at the end of the grace period (2 s
    here), its connection closed and the room it reserved in the upload store given back."""
    from tests.support import trickle

    url, cache, limits = guarded_file_app
    outcome = trickle(url, b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\nContent-Type: "
                           b"multipart/form-data; boundary=b\r\n\r\n--b\r\nContent-Disposition: form-data; "
                           b"name=\"files\"; filename=\"a\"\r\n\r\n", give_up_after=20)
    answer, took = outcome["answer"], outcome["seconds"]
    assert answer.startswith(b"HTTP/1.1 408") and b"the upload was too slow" in answer, answer[:200]
    assert outcome["closed"] and 2 <= took < 6, took
    assert _post(url, os.urandom(900_000)).status_code == 200  # its reservation is free again
