"""Decode any audio (or video) file into the 16 kHz mono float32 waveform Whisper expects.

Every stage that reads audio goes through `load_audio`: the feature stage (Common Voice
mp3), the transcription engine and the apps (browser WebM recordings, uploads of any
container, YouTube downloads). The container is probed from the content, never from the
file name, so a WebM recording saved as `.wav` decodes like any other file.

Decoding runs in-process with torchcodec (FFmpeg's libraries): a few ms per Common Voice
mp3 against ~60-90 ms for an `ffmpeg` subprocess (bench/bench_features.py measures both),
with identical samples (both use FFmpeg's resampler). The `ffmpeg` command line is the
fallback when torchcodec cannot be imported (it is tied to specific torch/FFmpeg versions).

A stranger's file (an upload, a recording, a download) is decoded by `read_audio` instead,
under a cap: an `ffmpeg` child streams samples and is stopped once the cap (plus a second)
is decoded, whatever duration the file claims, so memory and time follow the cap, not the
file. A decoder crash or hang costs that child, never the server; the child reads local
files and pipes only (an uploaded playlist cannot make it fetch a URL). An open file (an
upload still in its spooled temporary file) is handed to the child as a file it can seek in,
never through a pipe: an MP4 whose index (moov) comes after its samples, as phones and
cameras write them, cannot be decoded from a pipe.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Optional, Union

import numpy as np

from . import WhisperGLError, error_line
from .window import SAMPLING_RATE

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]
# What the engine accepts: a file (path or bytes) or samples already at 16 kHz.
Audio = Union[str, os.PathLike, bytes, bytearray, np.ndarray]

# Short, stable reasons (also the categories of the feature stage's rejected.csv).
MISSING_FILE = "missing file"
EMPTY_FILE = "empty file"
NOT_AUDIO = "not an audio file / could not decode"
NO_AUDIO_STREAM = "no audio stream"
NO_SAMPLES = "no audio samples"
TOO_SLOW = "took too long to decode"

# A capped decode runs this far past the cap, so codec padding never refuses a file that
# lasts exactly the cap.
DECODE_MARGIN_S = 1.0
# A capped decode's deadline: FFmpeg decodes any audio codec far faster than 10x real time.
DECODE_SECONDS_PER_SECOND = 0.1
DECODE_SECONDS_MIN = 30.0
_READ_BYTES = 1 << 20
_DURATION_LINE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


class AudioError(WhisperGLError):
    """Audio that cannot be read. `reason` is one of the short reasons above."""

    def __init__(self, reason: str, source_name: str = "audio", detail: str = ""):
        self.reason = reason
        self.source_name = source_name
        self.detail = detail
        super().__init__(f"{source_name}: {reason}")


@dataclass
class DecodedAudio:
    """A waveform decoded by `read_audio`, with what the file claimed about itself."""

    waveform: np.ndarray
    sampling_rate: int
    # The container's duration field: None when it has none, or holds video (which may last longer).
    announced_seconds: Optional[float]
    decode_errors: int  # errors FFmpeg reported while decoding (damaged frames)

    @property
    def seconds(self) -> float:
        return len(self.waveform) / self.sampling_rate

    @property
    def partial_note(self) -> str:
        """One line saying the file decoded only in part, or "" when it decoded whole."""
        announced = self.announced_seconds
        if announced and self.seconds < announced - max(1.0, 0.05 * announced):
            return (f"only {self.seconds:.1f} s of the {announced:.1f} s this file announces could be "
                    "decoded: it may be cut or damaged")
        if self.decode_errors:
            return "parts of this file could not be decoded: it may be damaged"
        return ""


class AudioTooLong(WhisperGLError):
    """More audio than the cap: decoding stopped at the cap."""


def read_audio(source: AudioSource, *, max_seconds: float, sampling_rate: int = SAMPLING_RATE) -> DecodedAudio:
    """Decode at most `max_seconds` of a file path, an in-memory file or an open file (any format FFmpeg reads).

    Decoding stops once the cap plus DECODE_MARGIN_S is reached, whatever the container
    claims, and then raises AudioTooLong ("this media lasts more than N min ..."); it also
    stops after a deadline that follows the cap. Raises AudioError for unreadable input.
    """
    from .config import MediaLimits

    data, name = _read_source(source)
    budget = int((max_seconds + DECODE_MARGIN_S) * sampling_rate) + 1
    deadline = DECODE_SECONDS_MIN + max_seconds * DECODE_SECONDS_PER_SECOND
    decoded = _decode_ffmpeg(data, sampling_rate, name, max_samples=budget, timeout=deadline)
    if len(decoded.waveform) >= budget:
        raise AudioTooLong(MediaLimits(max_seconds=max_seconds).too_long())
    if decoded.waveform.size == 0:
        raise AudioError(NO_SAMPLES, name)
    return decoded


def load_audio(source: AudioSource, sampling_rate: int = SAMPLING_RATE, *,
               backend: str = "auto", max_seconds: Optional[float] = None) -> np.ndarray:
    """Decode a file path or in-memory file into a mono float32 waveform at `sampling_rate`.

    Any container/codec FFmpeg reads (mp3, m4a, ogg/opus, flac, wav of any bit depth,
    webm, video files) is accepted; stereo is mixed down and the audio resampled.
    `backend` is "auto" (torchcodec, else the ffmpeg command), "torchcodec" or "ffmpeg".
    `max_seconds` caps the decode (`read_audio`: the ffmpeg command, stopped at the cap).
    Raises AudioError with a short reason for missing, empty or undecodable input.
    """
    if max_seconds is not None:
        return read_audio(source, max_seconds=max_seconds, sampling_rate=sampling_rate).waveform
    data, name = _read_source(source)
    if backend == "auto":
        backend = "torchcodec" if _torchcodec_available() else "ffmpeg"
    decode = {"torchcodec": _decode_torchcodec, "ffmpeg": _decode_ffmpeg_whole}.get(backend)
    if decode is None:
        raise ValueError(f"unknown audio backend {backend!r}: expected auto, torchcodec or ffmpeg")
    waveform = decode(data, sampling_rate, name)
    if waveform.size == 0:
        raise AudioError(NO_SAMPLES, name)
    return waveform


def as_waveform(audio: Audio) -> np.ndarray:
    """A 16 kHz mono float32 waveform from a path or file bytes (any container, decoded by
    `load_audio`) or from samples already at 16 kHz: float, or integer PCM (a microphone's
    int16) scaled to [-1, 1]; two channels, either way round, are averaged."""
    if not isinstance(audio, np.ndarray):
        return load_audio(audio if isinstance(audio, (bytes, bytearray)) else os.fspath(audio))
    waveform = audio
    if np.issubdtype(waveform.dtype, np.integer):  # before any averaging, which would make it float
        waveform = waveform / float(np.iinfo(waveform.dtype).max)
    if waveform.ndim == 2:  # (samples, channels) or (channels, samples)
        waveform = waveform.mean(axis=int(np.argmin(waveform.shape)))
    if waveform.ndim != 1:
        raise WhisperGLError(f"expected a mono waveform, got an array of shape {audio.shape}")
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _read_source(source: AudioSource, read: bool = True) -> tuple[bytes | str | BinaryIO, str]:
    """Check the input up front so the common failures get precise reasons."""
    if hasattr(source, "fileno") and hasattr(source, "seek"):  # an open file: decoded where it lies
        if hasattr(source, "rollover"):  # a SpooledTemporaryFile still in memory: onto disk, unnamed
            source.rollover()
        if os.fstat(source.fileno()).st_size == 0:
            raise AudioError(EMPTY_FILE, "audio data")
        return source, "audio data"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise AudioError(EMPTY_FILE, "audio data")
        return data, "audio data"
    path = Path(source)
    name = path.name or str(path)
    if not path.is_file():
        raise AudioError(MISSING_FILE, name)
    if path.stat().st_size == 0:
        raise AudioError(EMPTY_FILE, name)
    return str(path), name


def _torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError or a native library that fails to load
        return False
    return True


def _decode_torchcodec(data: bytes | str, sampling_rate: int, name: str) -> np.ndarray:
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(data, sample_rate=sampling_rate, num_channels=1)
    except ValueError as error:  # torchcodec's "best audio stream is unknown"
        if "stream" in str(error):
            raise AudioError(NO_AUDIO_STREAM, name) from None
        raise AudioError(NOT_AUDIO, name, error_line(error)) from None
    except RuntimeError as error:  # FFmpeg could not open/probe the input
        raise AudioError(NOT_AUDIO, name, _ffmpeg_reason(str(error))) from None
    try:
        samples = decoder.get_all_samples()
    except RuntimeError as error:
        raise AudioError(NOT_AUDIO, name, _ffmpeg_reason(str(error))) from None
    return samples.data[0].numpy().astype(np.float32, copy=False)


def _decode_ffmpeg_whole(data: bytes | str | BinaryIO, sampling_rate: int, name: str) -> np.ndarray:
    return _decode_ffmpeg(data, sampling_rate, name).waveform


def _decode_ffmpeg(data: bytes | str | BinaryIO, sampling_rate: int, name: str, *, max_samples: Optional[int] = None,
                   timeout: Optional[float] = None) -> DecodedAudio:
    """Stream the samples of an `ffmpeg` child; stop it after `max_samples` or `timeout` seconds.
    `data`: a path, bytes (fed through a pipe) or an open file (inherited by the child, which
    opens it anew as /dev/fd/N: its own position, and seekable)."""
    from_memory = isinstance(data, bytes)
    inherited = () if isinstance(data, (bytes, str)) else (data.fileno(),)
    source = "pipe:0" if from_memory else f"file:/dev/fd/{inherited[0]}" if inherited else f"file:{data}"
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info",
        # Local files and pipes only: a playlist (.m3u8) or concat file must not fetch URLs.
        "-protocol_whitelist", "file,pipe", "-i", source,
        # asetpts: timestamps from the sample count, so odd input timestamps raise no muxer error.
        "-map", "0:a:0", "-ac", "1", "-ar", str(sampling_rate), "-af", "asetpts=N/SR/TB", "-f", "f32le", "pipe:1",
    ]
    expired = threading.Event()
    if inherited:
        os.lseek(inherited[0], 0, os.SEEK_SET)  # where /dev/fd/N shares the position (BSD, macOS)
    with subprocess.Popen(command, stdin=subprocess.PIPE if from_memory else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=inherited) as child:
        log = _FfmpegLog(child.stderr)
        watchdog = threading.Timer(timeout or 0, lambda: (expired.set(), child.kill()))
        try:
            if from_memory:
                threading.Thread(target=_feed, args=(child.stdin, data), daemon=True).start()
            if timeout:
                watchdog.start()
            samples = _read_samples(child.stdout, max_samples)
            if max_samples is not None and len(samples) >= max_samples:
                child.kill()  # stopped at the cap: what is left is never decoded
            child.wait()
        finally:
            watchdog.cancel()
            if child.poll() is None:
                child.kill()
            log.finish()
    if expired.is_set():
        raise AudioError(TOO_SLOW, name)
    if child.returncode != 0 and not samples.size:
        raise AudioError(NO_AUDIO_STREAM if log.no_audio_stream else NOT_AUDIO, name, log.first_error)
    announced = None if log.has_video else log.announced_seconds
    return DecodedAudio(samples, sampling_rate, announced, log.errors)


def _read_samples(stream: IO[bytes], max_samples: Optional[int]) -> np.ndarray:
    """float32 samples from a pipe, at most `max_samples` of them."""
    limit = None if max_samples is None else max_samples * 4
    received = bytearray()
    while limit is None or len(received) < limit:
        chunk = stream.read(_READ_BYTES if limit is None else min(_READ_BYTES, limit - len(received)))
        if not chunk:
            break
        received += chunk
    del received[len(received) - len(received) % 4:]
    return np.frombuffer(received, dtype=np.float32)


def _feed(stdin: IO[bytes], data: bytes) -> None:
    try:
        stdin.write(data)
        stdin.close()
    except (OSError, ValueError):  # the child stopped reading (done, or stopped at the cap)
        pass


class _FfmpegLog:
    """What FFmpeg's log says, read while it runs (a full stderr pipe would stall it): the
    duration the container announces, and how many errors decoding met. Lines are read in
    bounded pieces, so a hostile file's huge metadata costs no memory."""

    def __init__(self, stream: IO[bytes]):
        self.announced_seconds: Optional[float] = None
        self.errors = 0
        self.first_error = ""
        self.no_audio_stream = False
        self.has_video = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self._thread.join()

    def _read(self, stream: IO[bytes]) -> None:
        while line := stream.readline(4096):
            text = line.decode(errors="replace").strip()
            if "[error]" in text or "[fatal]" in text:
                self.errors += 1
                self.first_error = self.first_error or text.split("]", 2)[-1].strip()
                self.no_audio_stream = self.no_audio_stream or "matches no streams" in text
            elif self.announced_seconds is None and (match := _DURATION_LINE.search(text)):
                hours, minutes, seconds = match.groups()
                self.announced_seconds = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            elif text.startswith("[info]") and ": Video: " in text and "attached pic" not in text:  # not cover art
                self.has_video = True
def _ffmpeg_reason(message: str) -> str:
    """torchcodec prefixes FFmpeg's words with a C++ source location: drop it."""
    line = error_line(message)
    return line.split(".cpp:", 1)[-1].lstrip("0123456789, ").strip()


# What audio and video files are called, and how they begin: a file that claims to be media by
# its name or its first bytes and does not decode is a broken recording, not some other file.
MEDIA_SUFFIXES = frozenset(
    "3g2 3gp aac ac3 aif aifc aiff amr ape asf au avi caf dts eac3 f4a f4v flac flv m2ts m4a m4b m4v mka "
    "mkv mov mp2 mp3 mp4 mpa mpeg mpg mts mxf oga ogg ogv opus qt ra rm snd spx ts vob wav wave weba webm "
    "wma wmv wv".split())
_MEDIA_SIGNATURES = (  # (offset, bytes)
    (0, b"RIFF"), (0, b"RIFX"), (0, b"RF64"), (0, b"ID3"), (0, b"fLaC"), (0, b"OggS"), (0, b"FORM"), (0, b".snd"),
    (0, b"\x1aE\xdf\xa3"),  # Matroska, WebM
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"),  # MP4, M4A, MOV, 3GP
    (0, b"#!AMR"), (0, b"caff"), (0, b"FLV"), (0, b"MAC "), (0, b"wvpk"),
    (0, b"0&\xb2u\x8ef\xcf\x11"), (0, b"\x00\x00\x01\xba"),  # ASF (WMA, WMV), MPEG program stream
    (0, b"\xff\xfb"), (0, b"\xff\xfa"), (0, b"\xff\xf3"), (0, b"\xff\xf2"), (0, b"\xff\xe3"),  # MPEG audio layer III
    (0, b"\xff\xf1"), (0, b"\xff\xf9"),  # AAC in ADTS
)


def claims_media(path: str | os.PathLike) -> bool:
    """Whether a file says it is audio or video, by its extension or its first bytes (never
    decoded here): what tells a broken recording from a file that is simply something else."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") in MEDIA_SUFFIXES:
        return True
    if not path.is_file():  # a device or a pipe could block a read for ever
        return False
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return False
    return any(head[offset: offset + len(signature)] == signature for offset, signature in _MEDIA_SIGNATURES)


def has_audio_stream(path: str | os.PathLike) -> bool:
    """Whether FFmpeg finds an audio stream in the file, judged by its content (never its name):
    how audio and video files are told from the rest of a folder without decoding them. A file
    whose header is media but whose data is broken passes here and fails in `load_audio`."""
    if _torchcodec_available():
        from torchcodec.decoders import AudioDecoder

        try:
            AudioDecoder(str(path))  # opens and probes the container; decodes nothing yet
        except (ValueError, RuntimeError):
            return False
        return True
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index",
                             "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=False)
    return result.returncode == 0 and bool(result.stdout.strip())
