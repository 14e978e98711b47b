"""The transcription engine: one object that turns audio into timed text.

    from whisper_gl.transcribe import Transcriber
    result = Transcriber("artifacts/model").transcribe("talk.mp3")
    print(result.text); open("talk.srt", "w").write(result.to_srt())

It loads a local model folder or a Hub id and picks a backend (whisper_gl.backends): the
CTranslate2 int8 export (`<model>/ctranslate2`, written by `whisper-gl export`) on CPU when
it exists, else transformers. Audio of any length is transcribed whole, window after window;
loops are bounded (tokens per second of audio), retried at higher temperature, and a looping
tail that survives is cut (or the segment dropped). A checkpoint that no longer predicts
timestamps still gets timed segments: the recording is split into voice-activity chunks
(faster-whisper's Silero VAD), each decoded without timestamps and timed by its bounds.

How to load is a `ModelOptions`, how to decode a `DecodingOptions` (whisper_gl.config); the
keyword arguments of `Transcriber(...)` and `transcribe(...)` set their fields by name.

Command line:  whisper-gl transcribe FILE [--model M] [--srt OUT] [--vtt OUT] ...
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ARTIFACTS_DIR, OFFLINE_BASE_DIR, WhisperGLError
from .audio import Audio, as_waveform
from .backends import TEXT_COMPRESSION_RATIO_THRESHOLD, Decoded, check_backend_name, load_backend
from .config import MODEL_ENV, DecodingOptions, ModelOptions, TranscribeConfig, subset
from .runtime import no_onnxruntime_telemetry, passive_openmp_waits
from .subtitles import Segment, to_srt, to_vtt
from .window import SAMPLING_RATE

__all__ = ["Segment", "Transcription", "Transcriber", "default_model", "ModelOptions", "DecodingOptions"]

logger = logging.getLogger(__name__)

# Pauses that end a voice-activity chunk: sentence breaks, not breaths.
VAD_MIN_SILENCE_MS = 500
TRAINED_MODEL_DIR = f"{ARTIFACTS_DIR}/model"
# Shorter than this, quieter than this peak (-60 dBFS), or without speech for the VAD
# (DecodingOptions.require_speech), there is nothing to transcribe: Whisper would only
# hallucinate on it ("Mónido de Vígrima." on a 20 s tone), so the engine returns no text.
MIN_SPEECH_SECONDS = 0.2
MIN_VOICE_SECONDS = 0.25  # speech the detector must hear before the engine decodes (require_speech)
SILENCE_PEAK = 1e-3
VAD_LISTEN_SECONDS = 30.0  # has_speech: the voice-activity detector's window


def default_model() -> str:
    """WHISPER_GL_MODEL, else the fine-tuned artifacts/model when trained, else the offline base."""
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
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


def _split_settings(settings: dict) -> tuple[dict, dict]:
    """Keyword settings -> (ModelOptions fields, DecodingOptions fields); an unknown name is a TypeError."""
    model_fields = {field.name for field in dataclasses.fields(ModelOptions)}
    decoding_fields = {field.name for field in dataclasses.fields(DecodingOptions)}
    unknown = set(settings) - model_fields - decoding_fields
    if unknown:
        raise TypeError(f"unknown engine settings: {', '.join(sorted(unknown))}")
    return ({k: v for k, v in settings.items() if k in model_fields},
            {k: v for k, v in settings.items() if k in decoding_fields})


class Transcriber:
    """Load a Whisper model once; transcribe many recordings, from several threads if needed.

        Transcriber("artifacts/model", beam_size=1, language="es")
        Transcriber(options=ModelOptions(device="cuda"), decoding=DecodingOptions(task="translate"))

    model: local folder or Hub id (default: options.model, else `default_model()`).
    options / decoding: how to load and how to decode; keyword settings override their fields
    (backend, device, compute_type, num_workers; language, task, beam_size, temperatures,
    timestamps, vad_filter: see whisper_gl.config).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, options: ModelOptions | None = None,
                 decoding: DecodingOptions | None = None, **settings):
        from .store import resolve_model

        passive_openmp_waits()  # before torch or CTranslate2 load, when nothing has loaded them yet
        no_onnxruntime_telemetry()  # before the VAD loads onnxruntime
        model_settings, decoding_settings = _split_settings(settings)
        if model is not None:
            model_settings["model"] = str(model)
        self.options = dataclasses.replace(options or ModelOptions(), **model_settings)
        self.decoding = dataclasses.replace(decoding or DecodingOptions(), **decoding_settings)
        check_backend_name(self.options.backend)
        self.model = str(self.options.model or default_model())
        self.folder = resolve_model(self.model)
        self._backend = load_backend(self.folder, self.options)
        self.backend = self._backend.name
        self.window = self._backend.window

    @property
    def language(self) -> str | None:
        """The language forced on every recording (None: detected)."""
        return self.decoding.forced_language

    def __repr__(self) -> str:
        return f"Transcriber(model={self.model!r}, backend={self.backend!r}, language={self.language!r})"

    def transcribe(self, audio: Audio, decoding: DecodingOptions | None = None, **settings) -> Transcription:
        """Transcribe a file path or bytes (any format ffmpeg reads) or a 16 kHz mono waveform.

        `decoding` (default: the engine's) and keyword settings (language, task, beam_size, ...)
        apply to this call only.
        """
        began = time.perf_counter()
        options = dataclasses.replace(decoding or self.decoding, **settings) if settings else (decoding or self.decoding)
        waveform = as_waveform(audio)
        duration = len(waveform) / SAMPLING_RATE
        if duration < MIN_SPEECH_SECONDS or not np.isfinite(waveform).all() or np.abs(waveform).max() < SILENCE_PEAK \
                or (options.require_speech and not has_speech(waveform)):
            decoded = Decoded([], options.forced_language or "", predicted_timestamps=False)
        else:
            decoded = self._decode(waveform, options)
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

    def _decode(self, waveform: np.ndarray, options: DecodingOptions) -> Decoded:
        if options.timestamps == "vad" or (options.timestamps == "auto" and not self.window.is_pretrained):
            # A short window (10 s) cuts sentences at most seams, and there a short-window model's
            # timestamps repeat and invent text (long.mp3, 10 s smoke model: WER 115 % with its
            # timestamps, 52 % on voice-activity chunks, 4x faster). Chunks split at pauses instead.
            return self._decode_speech_chunks(waveform, options)
        decoded = self._backend.decode(waveform, options)
        if options.timestamps == "auto" and not decoded.predicted_timestamps and (decoded.segments or decoded.stalled):
            # The model wrote text but closed no segment with a timestamp: a checkpoint that
            # lost timestamp prediction. Decode the way it was trained instead: no timestamps.
            logger.info("the model predicts no timestamps: decoding voice-activity chunks")
            decoded = self._decode_speech_chunks(waveform, options)
        return decoded

    def _decode_speech_chunks(self, waveform: np.ndarray, options: DecodingOptions) -> Decoded:
        spans = speech_spans(waveform, self.window.seconds)
        chunks = [waveform[start:end] for start, end in spans]
        texts, language = self._backend.decode_chunks(chunks, options)
        segments = [
            Segment(round(start / SAMPLING_RATE, 3), round(end / SAMPLING_RATE, 3), text)
            for (start, end), text in zip(spans, texts)
            if text
        ]
        return Decoded(segments, language, predicted_timestamps=False)


def speech_spans(waveform: np.ndarray, max_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech in `waveform`, split at pauses, each at most
    `max_seconds` long (faster-whisper's Silero voice-activity detector)."""
    no_onnxruntime_telemetry()
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=max_seconds, min_silence_duration_ms=VAD_MIN_SILENCE_MS)
    return [(span["start"], span["end"]) for span in get_speech_timestamps(waveform, options)]


def has_speech(waveform: np.ndarray) -> bool:
    """Whether the voice-activity detector hears speech anywhere in `waveform` (white noise, a
    tone or music without voice: no). It listens one window at a time and stops at the first
    speech, so a recording that talks costs one window of VAD (~0.1 s on a 2-core CPU)."""
    step = int(VAD_LISTEN_SECONDS * SAMPLING_RATE)
    for start in range(0, len(waveform), step):
        spans = speech_spans(waveform[start:start + step], VAD_LISTEN_SECONDS)
        # A blip shorter than a syllable is the detector's noise, not a voice.
        if sum(end - begin for begin, end in spans) >= MIN_VOICE_SECONDS * SAMPLING_RATE:
            return True
    return False


def run(config: TranscribeConfig) -> Transcription:
    """`whisper-gl transcribe`: print the text, write the subtitles asked for, report the speed."""
    from .store import atomic_write_text

    transcriber = Transcriber(options=subset(ModelOptions, config), decoding=subset(DecodingOptions, config))
    result = transcriber.transcribe(config.audio)
    print(result.text)
    for path, render in ((config.srt, result.to_srt), (config.vtt, result.to_vtt)):
        if path:
            atomic_write_text(path, render())
    print(
        f"[{result.model} | {result.backend} | language {result.language or '?'} | "
        f"{result.duration:.1f} s of audio in {result.elapsed:.1f} s, RTF {result.real_time_factor:.2f} | "
        f"{len(result.segments)} segments]",
        file=sys.stderr,
    )
    return result


def main(argv: list[str] | None = None) -> Transcription:
    from .cli import invoke_verb

    return invoke_verb(("transcribe",), argv)


if __name__ == "__main__":
    from .cli import door

    door("transcribe", prog="python -m whisper_gl.transcribe")
