"""Decode any audio (or video) file into the 16 kHz mono float32 waveform Whisper expects.

Every stage that reads audio goes through `load_audio`: the feature stage (Common Voice
mp3), the transcription engine and the apps (browser WebM recordings, uploads of any
container, YouTube downloads). The container is probed from the content, never from the
file name, so a WebM recording saved as `.wav` decodes like any other file.

Decoding runs in-process with torchcodec (FFmpeg's libraries): a few ms per Common Voice
mp3 against ~60-90 ms for an `ffmpeg` subprocess (bench/bench_features.py measures both),
with identical samples (both use FFmpeg's resampler). The `ffmpeg` command line is the
fallback when torchcodec cannot be imported (it is tied to specific torch/FFmpeg versions).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Union

import numpy as np

from . import WhisperGLError, error_line
from .window import SAMPLING_RATE

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview]
# What the engine accepts: a file (path or bytes) or samples already at 16 kHz.
Audio = Union[str, os.PathLike, bytes, bytearray, np.ndarray]

# Short, stable reasons (also the categories of the feature stage's rejected.csv).
MISSING_FILE = "missing file"
EMPTY_FILE = "empty file"
NOT_AUDIO = "not an audio file / could not decode"
NO_AUDIO_STREAM = "no audio stream"
NO_SAMPLES = "no audio samples"


class AudioError(WhisperGLError):
    """Audio that cannot be read. `reason` is one of the short reasons above."""

    def __init__(self, reason: str, source_name: str = "audio", detail: str = ""):
        self.reason = reason
        self.source_name = source_name
        self.detail = detail
        super().__init__(f"{source_name}: {reason}")


def load_audio(source: AudioSource, sampling_rate: int = SAMPLING_RATE, *,
               backend: str = "auto") -> np.ndarray:
    """Decode a file path or in-memory file into a mono float32 waveform at `sampling_rate`.

    Any container/codec FFmpeg reads (mp3, m4a, ogg/opus, flac, wav of any bit depth,
    webm, video files) is accepted; stereo is mixed down and the audio resampled.
    `backend` is "auto" (torchcodec, else the ffmpeg command), "torchcodec" or "ffmpeg".
    Raises AudioError with a short reason for missing, empty or undecodable input.
    """
    data, name = _read_source(source)
    if backend == "auto":
        backend = "torchcodec" if _torchcodec_available() else "ffmpeg"
    decode = {"torchcodec": _decode_torchcodec, "ffmpeg": _decode_ffmpeg}.get(backend)
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
    if waveform.ndim == 2:  # (samples, channels) or (channels, samples)
        waveform = waveform.mean(axis=int(np.argmin(waveform.shape)))
    if waveform.ndim != 1:
        raise WhisperGLError(f"expected a mono waveform, got an array of shape {audio.shape}")
    if np.issubdtype(waveform.dtype, np.integer):
        waveform = waveform / float(np.iinfo(waveform.dtype).max)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def probe_duration(path: str | os.PathLike) -> float:
    """Duration of an audio/video file in seconds, read by ffprobe from the container.

    Some containers do not record it (a browser's MediaRecorder WebM): the audio is then
    decoded and its samples counted.
    """
    _, name = _read_source(path, read=False)
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration",
         "-of", "default=noprint_wrappers=1:nokey=1", str(path)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise AudioError(NOT_AUDIO, name, error_line(result.stderr))
    try:
        return float(result.stdout.strip())
    except ValueError:  # "N/A": the container has no duration field
        return len(load_audio(path)) / SAMPLING_RATE


def _read_source(source: AudioSource, read: bool = True) -> tuple[bytes | str, str]:
    """Check the input up front so the common failures get precise reasons."""
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


def _decode_ffmpeg(data: bytes | str, sampling_rate: int, name: str) -> np.ndarray:
    from_memory = isinstance(data, bytes)
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0" if from_memory else data,
               "-map", "0:a:0", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    result = subprocess.run(command, input=data if from_memory else None,
                            capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace")
        if "matches no streams" in message:
            raise AudioError(NO_AUDIO_STREAM, name)
        raise AudioError(NOT_AUDIO, name, error_line(message))
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def _ffmpeg_reason(message: str) -> str:
    """torchcodec prefixes FFmpeg's words with a C++ source location: drop it."""
    line = error_line(message)
    return line.split(".cpp:", 1)[-1].lstrip("0123456789, ").strip()


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
