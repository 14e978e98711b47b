"""Helpers shared by several test modules (fixtures live in conftest.py)."""

import contextlib
import functools
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder: Path):
    """Serve `folder` over HTTP on 127.0.0.1 (a stand-in for a media site); yields its URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def launched_app(script: str | list[str], cwd: Path, env: dict, log: Path, *, startup_seconds: float = 180,
                 stop_signal: int = signal.SIGTERM, ready_path: str = ""):
    """`python script` (or `python *script`, where "{port}" stands for the port) in `cwd` as a
    server on a free 127.0.0.1 port, its output in `log`; yields (url, process) once
    url + `ready_path` answers, and stops it with `stop_signal` afterwards."""
    port = free_port()
    env = {**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    arguments = [script] if isinstance(script, str) else [part.format(port=port) for part in script]
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, *arguments], cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                pytest.fail(f"{script} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + ready_path, timeout=2)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{script} did not answer within {startup_seconds:g} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, process
    finally:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _RouteHandler(http.server.BaseHTTPRequestHandler):
    """Answers each path with its route function; records every request."""

    protocol_version = "HTTP/1.1"
    routes: dict = {}
    hits: list = []

    def do_GET(self):
        self.hits.append(self.path)
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        with contextlib.suppress(OSError):  # the client may hang up: that is the point of some routes
            route(self)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_routes(routes: dict):
    """An HTTP server on 127.0.0.1 answering each path with `routes[path](handler)` (a stand-in
    for a hostile site, or for an internal service that must never be reached). Yields
    (url, hits): hits lists every path requested, in order."""
    hits: list = []
    handler = type("Handler", (_RouteHandler,), {"routes": routes, "hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def send_media(handler, body: bytes, content_type: str = "audio/mpeg", status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def stream_media(seconds_per_piece: float, piece: bytes, content_type: str = "audio/mpeg"):
    """A route that streams `piece` every `seconds_per_piece`, forever, with no Content-Length."""

    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        if handler.command == "HEAD":
            return
        while True:
            handler.wfile.write(piece)
            handler.wfile.flush()
            time.sleep(seconds_per_piece)

    return route


def redirect_to(location: str):
    def route(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_hostile_media(folder: Path) -> dict[str, Path]:
    """Files that lie about their length or cost far more to decode than their size
    (a few MB each, made in seconds by copying packets, not encoding hours):

    chained.ogg     60 min of Opus noise, then a 1 s stream (`cat a.ogg b.ogg`): announces 1 s
    vbr.mp3         20 frames at 320 kb/s, then 120 s at 32 kb/s, no Xing header: announces 29 s
    silence.ogg     4 h of Opus silence + 1 s of tone, 5.4 MB: announces 1 s, decodes to 0.9 GB
    recording.webm  2 h of Opus in a WebM without duration (a browser's MediaRecorder writes that)
    noise.wav, tone.wav   20 s of white noise, 20 s of a 440 Hz sine
    """
    def opus(source: str, seconds: int, name: str) -> Path:
        ffmpeg("-f", "lavfi", "-i", source, "-t", str(seconds), "-ac", "1", "-c:a", "libopus",
               "-b:a", "6k", str(folder / name))
        return folder / name

    def looped(piece: Path, times: int, name: str, *options: str) -> Path:
        ffmpeg("-stream_loop", str(times - 1), "-i", str(piece), "-c", "copy", *options, str(folder / name))
        return folder / name

    def joined(name: str, *parts: Path) -> Path:
        (folder / name).write_bytes(b"".join(part.read_bytes() for part in parts))
        return folder / name

    noise = opus("anoisesrc=a=0.05:r=48000", 60, "noise60.ogg")
    silence = opus("anullsrc=r=48000", 60, "silence60.ogg")
    beep = opus("sine=frequency=440:r=48000", 1, "beep.ogg")
    files = {
        "chained.ogg": joined("chained.ogg", looped(noise, 60, "noise60min.ogg"), beep),
        "silence.ogg": joined("silence.ogg", looped(silence, 240, "silence4h.ogg"), beep),
    }
    with (folder / "recording.webm").open("wb") as webm:  # written to a pipe: no duration, no cues
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "119", "-i", str(noise),
                        "-c", "copy", "-f", "webm", "pipe:1"], stdout=webm, check=True)
    files["recording.webm"] = folder / "recording.webm"
    frames = [("sine=frequency=440:r=44100", str(20 * 1152 / 44100), "320k", "head.mp3"),
              ("anoisesrc=a=0.1:r=44100", "120", "32k", "tail.mp3")]
    for source, seconds, rate, name in frames:
        ffmpeg("-f", "lavfi", "-i", source, "-t", seconds, "-c:a", "libmp3lame", "-b:a", rate, "-write_xing", "0",
               "-id3v2_version", "0", str(folder / name))
    files["vbr.mp3"] = joined("vbr.mp3", folder / "head.mp3", folder / "tail.mp3")
    for name, source in (("noise.wav", "anoisesrc=a=0.3:d=20:seed=7"), ("tone.wav", "sine=frequency=440:d=20")):
        ffmpeg("-f", "lavfi", "-i", f"{source}:r=16000", str(folder / name))
        files[name] = folder / name
    return files


def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """(resident, peak resident) memory of a process, in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak_memory(pid: int | str = "self") -> None:
    """Start measuring a process's peak resident memory again from now (Linux clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def hls_playlist(segment_urls) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    for url in segment_urls:
        lines += ["#EXTINF:2.0,", url]
    return ("\n".join(lines + ["#EXT-X-ENDLIST", ""])).encode()


@contextlib.contextmanager
def internal_and_hostile_sites():
    """Two HTTP servers on 127.0.0.1. The internal service stands for what a Space's network
    holds (metadata endpoint, admin pages): it must never be reached, and records every
    request. The hostile site stands for a public host: endless, trickling and steady bodies
    without length, a redirect and HLS playlists into the internal service.
    Yields (hostile_url, internal_url, internal_hits)."""
    internal = {"/exists.ts": lambda h: send_media(h, b"\x47" * 188 * 10, "video/mp2t"),
                "/secret.mp3": lambda h: send_media(h, b"secret")}
    with serve_routes(internal) as (service, hits):
        hostile = {
            "/endless.mp3": stream_media(0, b"\xff" * 65536),
            "/trickle.mp3": stream_media(0.5, b"\xff"),
            "/steady.mp3": stream_media(0.05, b"\xff" * 2048),  # 40 kB/s: above the minimum rate
            "/redirect.mp3": redirect_to(f"{service}/secret.mp3"),
            "/exists.m3u8": lambda h: send_media(h, hls_playlist([f"{service}/exists.ts"]), "application/x-mpegURL"),
            "/missing.m3u8": lambda h: send_media(h, hls_playlist([f"{service}/missing.ts"]), "application/x-mpegURL"),
        }
        with serve_routes(hostile) as (site, _):
            yield site, service, hits


def kill_once_exists(command: list[str], cwd: Path, ready: Path, *, timeout: float = 300) -> None:
    """Start `command`, wait until `ready` exists, then SIGKILL it and every process it started
    (torchrun starts its workers in sessions of their own): a crash in the middle of its work."""
    import psutil

    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists() and process.poll() is None, f"{ready} did not appear before the run ended"
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(process.pid)
            for member in [*parent.children(recursive=True), parent]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
        process.wait()


def assert_same_audio(waveform, source, *, min_snr_db: float = 20.0) -> None:
    """`waveform` (16 kHz) holds the audio of `source` (a path, or a 16 kHz waveform) from its start, up to
    resampling, codecs and 16-bit rounding: the same length within 10 ms, and a signal-to-noise
    ratio above `min_snr_db` (a shifted or different recording scores below 0 dB)."""
    import numpy as np

    from whisper_gl.audio import as_waveform, load_audio

    original = source if isinstance(source, np.ndarray) else load_audio(source)
    original = original[: len(waveform) + 160]
    waveform = as_waveform(waveform)
    assert abs(len(waveform) - len(original)) <= 160, (len(waveform), len(original))
    n = min(len(waveform), len(original))
    noise = waveform[:n] - original[:n]
    snr = 10 * np.log10(np.sum(original[:n] ** 2) / max(np.sum(noise ** 2), 1e-20))
    assert snr > min_snr_db, f"SNR {snr:.1f} dB"


def best_stretch_cer(transcript: str, sentences: list[str], longest: int = 50) -> float:
    """The CER of `transcript` against the run of consecutive words of `sentences` it matches best
    (how docs/apps.md measured the live captions by hand; no test bounds it: see docs/testing.md)."""
    from whisper_gl.metrics import compute_metrics

    words = " ".join(sentences).split()
    return min(compute_metrics([transcript], [" ".join(words[start:end])])["cer"]
               for start in range(len(words)) for end in range(start + 1, min(len(words), start + longest) + 1))


@contextlib.contextmanager
def serving_in_thread(app, options=None, on_shutdown=()):
    """`app` (ASGI) served by whisper_gl.webserver (uvicorn with its time bounds: head deadline,
    keep-alive, shutdown deadline) on a free 127.0.0.1 port, in a thread; yields its URL (no
    trailing slash). `options`: a whisper_gl.config.ServerOptions (or any config with its fields)."""
    from whisper_gl.config import ServerOptions
    from whisper_gl.webserver import Server

    port = free_port()
    server = Server(app, "127.0.0.1", port, options or ServerOptions(), on_shutdown)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def trickle(url: str, head: bytes, *, every: float = 0.5, source: str = "127.0.0.1",
            stop: threading.Event | None = None, give_up_after: float = 60) -> dict:
    """A slow client: open a connection to `url` (from the loopback address `source`), send the
    request `head`, then one byte of body every `every` seconds until the server answers and
    closes the connection, `stop` is set or `give_up_after` seconds pass. Returns what it got:
    {"answer": bytes received, "closed": whether the server hung up, "seconds": how long it took}."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    outcome = {"answer": b"", "closed": False}
    started = time.monotonic()
    with socket.create_connection((host, int(port)), source_address=(source, 0)) as connection:
        connection.sendall(head)
        connection.settimeout(every)
        while not (stop and stop.is_set()) and time.monotonic() - started < give_up_after:
            with contextlib.suppress(OSError):
                connection.sendall(b"x")
            try:
                piece = connection.recv(65536)
            except socket.timeout:
                continue
            except OSError:  # reset: the server closed while a byte was on its way
                piece = b""
            if not piece:
                outcome["closed"] = True
                break
            outcome["answer"] += piece
    return {**outcome, "seconds": time.monotonic() - started}


def fake_microphone(speech: Path) -> list[str]:
    """Chromium flags: a microphone that plays `speech` (looped) and is allowed without asking."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={speech}"]


# --- sets for the no-speech guard (tests/test_no_speech.py, bench/bench_no_speech.py) -------------

NOISE_COLOURS = ("white", "pink", "brown", "velvet")  # anoisesrc's c=
NOISE_LEVELS = (0.05, 0.2, 0.5)  # anoisesrc's a= (peak amplitude)
NOISE_SEEDS = (2, 11)
HUMS = ((50, 0.1), (60, 0.1), (50, 0.4), (60, 0.4))  # mains hum (Hz, amplitude), with its harmonics
TONES = ((440,), (1000,), (3000,), (262, 330, 392))  # steady sines: A4, 1 kHz, 3 kHz, a C major chord


def lavfi_samples(source: str) -> "np.ndarray":
    """The samples of an ffmpeg lavfi source at 16 kHz mono (no file written)."""
    import numpy as np

    run = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", source,
                          "-ac", "1", "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True)
    return np.frombuffer(run.stdout, dtype=np.float32).copy()


def noise_clips(seconds: float = 3.0) -> dict[str, "np.ndarray"]:
    """Sound without speech, `seconds` each (38 clips by default): noise of four colours at three
    levels and two seeds (ffmpeg's anoisesrc), mains hum at 50 and 60 Hz with its harmonics at two
    levels, and steady tones (single sines and a chord). Named like `pink-a0.2-s11`, `hum50-a0.1`."""
    import numpy as np

    clips = {f"{colour}-a{level}-s{seed}": lavfi_samples(
        f"anoisesrc=d={seconds}:c={colour}:r=16000:a={level}:seed={seed}")
        for colour in NOISE_COLOURS for level in NOISE_LEVELS for seed in NOISE_SEEDS}
    for base, level in HUMS:
        clips[f"hum{base}-a{level}"] = hum(base, seconds, level)
    time = np.arange(round(seconds * 16000)) / 16000
    for frequencies in TONES:
        wave = sum(np.sin(2 * np.pi * frequency * time) for frequency in frequencies)
        clips["tone" + "+".join(map(str, frequencies))] = (0.3 * wave / np.abs(wave).max()).astype(np.float32)
    return clips


def hum(base: float, seconds: float, level: float) -> "np.ndarray":
    """Mains hum: a fundamental and its first harmonics, falling off as 1/n, peaking at `level`."""
    import numpy as np

    time = np.arange(round(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * base * n * time) / n for n in range(1, 6))
    return (level * wave / np.abs(wave).max()).astype(np.float32)


def with_noise(speech: "np.ndarray", noise: "np.ndarray", snr_db: float) -> "np.ndarray":
    """`speech` with `noise` (cut or repeated to its length) added at `snr_db` (power over the whole clip)."""
    import numpy as np

    noise = np.resize(noise, len(speech)).astype(np.float64)
    scale = np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    mixed = speech + scale * noise
    return (mixed / max(1.0, np.abs(mixed).max())).astype(np.float32)


def noisy_speech_clips(corpus: Path, count: int = 12, snr_db: float = 10.0) -> dict[str, tuple["np.ndarray", str]]:
    """The first `count` clips of the sample corpus's test split, each mixed with another kind of noise
    (the four colours and hum, in turn) at `snr_db`: {name: (waveform, sentence)}."""
    import csv

    from whisper_gl.audio import load_audio

    with open(corpus / "test.tsv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))[:count]
    kinds = [*NOISE_COLOURS, "hum"]
    clips = {}
    for index, row in enumerate(rows):
        speech = load_audio(corpus / "clips" / row["path"])
        kind = kinds[index % len(kinds)]
        seconds = len(speech) / 16000 + 0.1
        noise = hum(50, seconds, 0.5) if kind == "hum" else lavfi_samples(
            f"anoisesrc=d={seconds:.2f}:c={kind}:r=16000:a=0.5:seed={index}")
        clips[f"{Path(row['path']).stem}+{kind}"] = (with_noise(speech, noise, snr_db), row["sentence"])
    return clips
