"""The transcription engine: one object that turns audio into timed text.

    from whisper_gl.transcribe import Transcriber
    result = Transcriber("artifacts/model").transcribe("talk.mp3")
    print(result.text); open("talk.srt", "w").write(result.to_srt())

It loads a local model folder or a Hub id and picks a backend: the CTranslate2 int8
export (`<model>/ctranslate2`, written by `python -m whisper_gl.export`) on CPU when it
exists, else transformers. Audio of any length is transcribed whole, window after window;
loops are bounded (tokens per second of audio), retried at higher temperature, and a
looping tail that survives is cut (or the segment dropped). A checkpoint that no longer
predicts timestamps still gets timed segments: the recording is split into voice-activity
chunks (faster-whisper's Silero VAD), each decoded without timestamps and timed by its bounds.

Command line:  python -m whisper_gl.transcribe FILE [--model M] [--srt OUT] [--vtt OUT] ...
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from . import ARTIFACTS_DIR, DEFAULT_LANGUAGE, DEFAULT_TASK, OFFLINE_BASE_DIR, WhisperGLError
from .backends import (
    PRETRAINED_WINDOW_SECONDS,
    SAMPLING_RATE,
    TEMPERATURES,
    TEXT_COMPRESSION_RATIO_THRESHOLD,
    CTranslate2Backend,
    Decoded,
    TransformersBackend,
    ctranslate2_export,
)
from .subtitles import Segment, to_srt, to_vtt

__all__ = ["Segment", "Transcription", "Transcriber", "default_model", "BACKENDS", "TIMESTAMP_MODES"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "ctranslate2", "transformers")
# "model": the model's own timestamps; "vad": voice-activity chunks decoded without timestamps,
# timed by their bounds; "auto": the model's timestamps, "vad" when it closes no segment with one
# or when its window is shorter than Whisper's 30 s (see Transcriber._decode).
TIMESTAMP_MODES = ("auto", "model", "vad")
# Pauses that end a voice-activity chunk: sentence breaks, not breaths.
VAD_MIN_SILENCE_MS = 500
TRAINED_MODEL_DIR = f"{ARTIFACTS_DIR}/model"
# Shorter than this, or quieter than this peak (-60 dBFS), there is nothing to transcribe:
# Whisper would only hallucinate on it, so the engine returns an empty transcript.
MIN_SPEECH_SECONDS = 0.2
SILENCE_PEAK = 1e-3

Audio = Union[str, os.PathLike, bytes, np.ndarray]


def default_model() -> str:
    """WHISPER_GL_MODEL, else the fine-tuned artifacts/model when trained, else the offline base."""
    if os.environ.get("WHISPER_GL_MODEL"):
        return os.environ["WHISPER_GL_MODEL"]
    if (Path(TRAINED_MODEL_DIR) / "config.json").is_file():
        return TRAINED_MODEL_DIR
    return OFFLINE_BASE_DIR


@dataclass
class Transcription:
    """Text and timed segments of one recording, with what produced them and how fast."""

    text: str
    segments: list[Segment]
    language: str
    duration: float  # seconds of audio
    elapsed: float  # seconds spent, audio decoding included
    backend: str
    model: str

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (below 1: faster than real time)."""
        return self.elapsed / self.duration if self.duration else 0.0

    def to_srt(self) -> str:
        return to_srt(self.segments)

    def to_vtt(self) -> str:
        return to_vtt(self.segments)


def as_waveform(audio: Audio) -> np.ndarray:
    """A 16 kHz mono float32 waveform from a path or file bytes (any container, via ffmpeg)
    or from an array already at 16 kHz."""
    if isinstance(audio, np.ndarray):
        waveform = audio
        if waveform.ndim == 2:  # (samples, channels) or (channels, samples): average the channels
            waveform = waveform.mean(axis=int(np.argmin(waveform.shape)))
        if waveform.ndim != 1:
            raise WhisperGLError(f"expected a mono waveform, got an array of shape {audio.shape}")
        if np.issubdtype(waveform.dtype, np.integer):  # PCM samples, e.g. int16 from a microphone
            waveform = waveform / float(np.iinfo(waveform.dtype).max)
        return np.ascontiguousarray(waveform, dtype=np.float32)
    from .audio import load_audio

    return load_audio(audio if isinstance(audio, (bytes, bytearray)) else os.fspath(audio),
                      sampling_rate=SAMPLING_RATE)


def is_degenerate(text: str) -> bool:
    """True for a repetition loop: text that zlib compresses far better than language does."""
    from faster_whisper.transcribe import get_compression_ratio

    return get_compression_ratio(text) > TEXT_COMPRESSION_RATIO_THRESHOLD


# 1-4 letters repeated 5+ times inside a word ("cfcfcfcfcf"); digits are left alone (1000000).
_LETTER_LOOP = re.compile(r"([^\W\d_]{1,4}?)\1{4,}")


def cut_repetition(text: str, longest_unit: int = 8) -> str:
    """Cut a loop off the end of `text`, keeping one copy of the repeated words.

    A unit of one word must repeat 4 times ("non, non, non" is Galician), longer units 3 times;
    letters looping inside a word are collapsed to one copy.
    """
    words = _LETTER_LOOP.sub(r"\1", text).split()
    keys = ["".join(ch for ch in word.lower() if ch.isalnum()) for word in words]
    best_cut = len(words)
    for unit in range(1, longest_unit + 1):
        tail = keys[len(keys) - unit:]
        repeats = 1
        while (repeats + 1) * unit <= len(keys) and keys[len(keys) - (repeats + 1) * unit: len(keys) - repeats * unit] == tail:
            repeats += 1
        if repeats >= (4 if unit == 1 else 3):
            best_cut = min(best_cut, len(words) - (repeats - 1) * unit)
    return " ".join(words[:best_cut])


def clean_segment(segment: Segment) -> Segment | None:
    """The segment with a looping tail cut; None when nothing worth keeping is left
    (no letters or digits, e.g. a hallucinated "..." on noise, or still repetitive)."""
    text = cut_repetition(segment.text)
    if not any(ch.isalnum() for ch in text) or is_degenerate(text):
        return None
    return segment if text == segment.text else Segment(segment.start, segment.end, text)


class Transcriber:
    """Load a Whisper model once; transcribe many recordings, from several threads if needed."""

    def __init__(self, model: str | os.PathLike | None = None, *, backend: str = "auto",
                 language: str | None = DEFAULT_LANGUAGE, task: str = DEFAULT_TASK, beam_size: int = 5,
                 device: str = "cpu", compute_type: str = "default", timestamps: str = "auto",
                 vad_filter: bool = False, num_workers: int = 1,
                 temperatures: tuple[float, ...] = TEMPERATURES):
        """
        model: local folder or Hub id (default: `default_model()`).
        backend: "auto" (CTranslate2 export on CPU when present, else transformers),
            "ctranslate2" or "transformers".
        language: forced language code (default Galician); None or "auto" detects it.
        task: "transcribe" or "translate" (to English).
        beam_size: beams per window (1 = greedy, faster).
        device: "cpu" or "cuda".
        compute_type: CTranslate2 weights type ("default": int8 on CPU, float16 on GPU).
        timestamps: "auto", "model" or "vad" (see TIMESTAMP_MODES).
        vad_filter: CTranslate2 only: skip non-speech with faster-whisper's Silero VAD.
        num_workers: CTranslate2 only: how many calls may decode at the same time.
        temperatures: decoding temperatures, tried in order while a window's output is too
            repetitive or too unlikely; (0.0,) makes the output deterministic.
        """
        from .store import resolve_model

        if backend not in BACKENDS:
            raise WhisperGLError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
        if timestamps not in TIMESTAMP_MODES:
            raise WhisperGLError(f"unknown timestamps mode '{timestamps}': choose one of {', '.join(TIMESTAMP_MODES)}")
        if task not in ("transcribe", "translate"):
            raise WhisperGLError(f"unknown task '{task}': choose transcribe or translate")
        self.model = str(model if model is not None else default_model())
        self.folder = resolve_model(self.model)
        self.language = None if language in (None, "", "auto") else language
        self.task = task
        self.timestamps = timestamps
        self._backend = self._load_backend(backend, device=device, beam_size=beam_size, compute_type=compute_type,
                                           vad_filter=vad_filter, num_workers=num_workers,
                                           temperatures=tuple(temperatures))
        self.backend = self._backend.name
        self.window_seconds = self._backend.window_seconds

    def _load_backend(self, backend: str, *, device: str, beam_size: int, compute_type: str,
                      vad_filter: bool, num_workers: int, temperatures: tuple[float, ...]):
        has_transformers = (self.folder / "config.json").is_file()
        if backend == "auto":
            use_ctranslate2 = ctranslate2_export(self.folder) is not None and (device == "cpu" or not has_transformers)
            backend = "ctranslate2" if use_ctranslate2 else "transformers"
        if backend == "ctranslate2":
            try:
                return CTranslate2Backend(self.folder, device=device, beam_size=beam_size, compute_type=compute_type,
                                          num_workers=num_workers, vad_filter=vad_filter, temperatures=temperatures)
            except WhisperGLError as error:
                if not has_transformers:
                    raise
                logger.warning("%s; using the transformers backend instead", error)
        if not has_transformers:
            raise WhisperGLError(f"'{self.model}' holds only a CTranslate2 model: use --backend ctranslate2")
        return TransformersBackend(self.folder, device=device, beam_size=beam_size, temperatures=temperatures)

    def __repr__(self) -> str:
        return f"Transcriber(model={self.model!r}, backend={self.backend!r}, language={self.language!r})"

    def transcribe(self, audio: Audio) -> Transcription:
        """Transcribe a file path or bytes (any format ffmpeg reads) or a 16 kHz mono waveform."""
        began = time.perf_counter()
        waveform = as_waveform(audio)
        duration = len(waveform) / SAMPLING_RATE
        if duration < MIN_SPEECH_SECONDS or not np.isfinite(waveform).all() or np.abs(waveform).max() < SILENCE_PEAK:
            decoded = Decoded([], self.language or "", predicted_timestamps=False)
        else:
            decoded = self._decode(waveform)
        segments = []
        for segment in decoded.segments:
            cleaned = clean_segment(segment)
            if cleaned is None:
                logger.warning("dropped a degenerate segment at %.1f-%.1f s: %.60r", segment.start, segment.end,
                               segment.text)
            else:
                segments.append(cleaned)
        return Transcription(
            text=" ".join(segment.text for segment in segments),
            segments=segments,
            language=decoded.language,
            duration=round(duration, 3),
            elapsed=time.perf_counter() - began,
            backend=self.backend,
            model=self.model,
        )

    def _decode(self, waveform: np.ndarray) -> Decoded:
        options = dict(language=self.language, task=self.task)
        if self.timestamps == "vad" or (self.timestamps == "auto" and self.window_seconds < PRETRAINED_WINDOW_SECONDS):
            # A short window (10 s) cuts sentences at most seams, and there a short-window model's
            # timestamps repeat and invent text (long.mp3, 10 s smoke model: WER 115 % with its
            # timestamps, 52 % on voice-activity chunks, 4x faster). Chunks split at pauses instead.
            return self._decode_speech_chunks(waveform)
        decoded = self._backend.decode(waveform, **options)
        if self.timestamps == "auto" and not decoded.predicted_timestamps and (decoded.segments or decoded.stalled):
            # The model wrote text but closed no segment with a timestamp: a checkpoint that
            # lost timestamp prediction. Decode the way it was trained instead: no timestamps.
            logger.info("the model predicts no timestamps: decoding voice-activity chunks")
            decoded = self._decode_speech_chunks(waveform)
        return decoded

    def _decode_speech_chunks(self, waveform: np.ndarray) -> Decoded:
        spans = speech_spans(waveform, self.window_seconds)
        chunks = [waveform[start:end] for start, end in spans]
        texts, language = self._backend.decode_chunks(chunks, language=self.language, task=self.task)
        segments = [
            Segment(round(start / SAMPLING_RATE, 3), round(end / SAMPLING_RATE, 3), text)
            for (start, end), text in zip(spans, texts)
            if text
        ]
        return Decoded(segments, language, predicted_timestamps=False)


def speech_spans(waveform: np.ndarray, max_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech in `waveform`, split at pauses, each at most
    `max_seconds` long (faster-whisper's Silero voice-activity detector)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=max_seconds, min_silence_duration_ms=VAD_MIN_SILENCE_MS)
    return [(span["start"], span["end"]) for span in get_speech_timestamps(waveform, options)]


def _write_text(path: str, text: str) -> None:
    """Write a whole file or nothing (temp file in the same folder, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> Transcription:
    from transformers import HfArgumentParser

    from .config import EngineConfig

    parser = HfArgumentParser(EngineConfig, description="Transcribe an audio or video file with Whisper.")
    parser.add_argument("audio", help="audio or video file (any format ffmpeg reads)")
    config, positional = parser.parse_args_into_dataclasses(args=argv)
    transcriber = Transcriber(
        config.model, backend=config.backend, language=config.language, task=config.task,
        beam_size=config.beam_size, device=config.device, compute_type=config.compute_type,
        timestamps=config.timestamps, vad_filter=config.vad_filter,
    )
    result = transcriber.transcribe(positional.audio)
    print(result.text)
    for path, render in ((config.srt, result.to_srt), (config.vtt, result.to_vtt)):
        if path:
            _write_text(path, render())
    print(
        f"[{result.model} | {result.backend} | language {result.language or '?'} | "
        f"{result.duration:.1f} s of audio in {result.elapsed:.1f} s, RTF {result.real_time_factor:.2f} | "
        f"{len(result.segments)} segments]",
        file=sys.stderr,
    )
    return result


if __name__ == "__main__":
    from .cli import run

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    run(main)
