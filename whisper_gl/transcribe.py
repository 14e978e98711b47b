"""The transcription engine: one object that turns audio into timed text.

    from whisper_gl.transcribe import Transcriber
    result = Transcriber("artifacts/model").transcribe("talk.mp3")
    print(result.text); open("talk.srt", "w").write(result.render("srt"))
    for segment in Transcriber("artifacts/model").transcribe_segments("talk.mp3"):  # as decoded
        print(segment.start, segment.text)

It loads a local model folder or a Hub id and picks a backend (whisper_gl.backends): the
CTranslate2 int8 export (`<model>/ctranslate2`, written by `whisper-gl export`) on CPU when
it exists, else transformers. Audio of any length is transcribed whole: window after window
(Whisper's long-form algorithm, the default), or with long_form="batched" split at pauses into
voice-activity chunks (faster-whisper's Silero VAD) of at most one window, decoded in batches,
each segment timed by its chunk plus the model's timestamps inside it. Loops are bounded
(tokens per second of audio), retried at higher temperature, and a repetition that survives is
collapsed to one copy (or the segment dropped). Where the voice-activity detector hears no
voice at all nothing is decoded, and a segment the decoder doubts (its no-speech probability,
log-probability, loops) over audio in which the detector hears almost no voice is dropped: noise
and tones give no text (`is_noise`). A checkpoint that no longer predicts timestamps still gets
timed segments: sentence-sized chunks decoded without timestamps, each timed by its bounds.
Every segment carries the decoder's statistics of its window (tokens, temperature, average
log-probability, compression ratio, no-speech probability) where the backend gives them.

How to load is a `ModelOptions`, how to decode a `DecodingOptions` (whisper_gl.config); the
keyword arguments of `Transcriber(...)` and `transcribe(...)` set their fields by name.

Command line:  whisper-gl transcribe PATH... [--output-dir OUT] [--format txt,srt,vtt,json] ...
(whisper_gl.batch: files, folders and globs through one engine).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .audio import Audio, as_waveform
from .backends import (LOGPROB_THRESHOLD, TEXT_COMPRESSION_RATIO_THRESHOLD, Decoded, check_backend_name,
                       load_backend)
from .config import DecodingOptions, ModelOptions
from .models import default_model, resolve_model
from .runtime import no_onnxruntime_telemetry, passive_openmp_waits
from .transcript import Segment, Transcription, Word
from .vad import has_speech, is_inaudible, speech_share, speech_spans
from .window import SAMPLING_RATE, Window

__all__ = ["Segment", "Word", "Transcription", "Transcriber", "default_model", "ModelOptions", "DecodingOptions"]

logger = logging.getLogger(__name__)

# A chunk whose decode stopped with this much voice activity still ahead is decoded on from there.
MIN_UNHEARD_SECONDS = 1.0
# The no-speech guard (DecodingOptions.require_speech), per segment: the decoder doubts it and the
# voice-activity detector hears a voice in less than MIN_SPEECH_SHARE of its audio. Either alone
# fails: the detector takes a moment of noise for a voice (20 s of white noise passed as speech,
# then "O água é o água e o água."), and the decoder's doubt alone (openai-whisper's skip) drops
# out-of-domain speech that loops (see backends.NO_SPEECH_THRESHOLD).
MIN_SPEECH_SHARE = 0.2
NO_SPEECH_PROBABILITY = 0.3  # the decoder doubts a segment whose window's <|nospeech|> is likelier


def is_degenerate(text: str) -> bool:
    """True for a repetition loop: text that zlib compresses far better than language does."""
    from faster_whisper.transcribe import get_compression_ratio

    return get_compression_ratio(text) > TEXT_COMPRESSION_RATIO_THRESHOLD


# 1-4 letters repeated 5+ times inside a word ("cfcfcfcfcf"); digits are left alone (1000000).
_LETTER_LOOP = re.compile(r"([^\W\d_]{1,4}?)\1{4,}")


def unrepeated(words: list[str], longest_unit: int = 8) -> list[int]:
    """Indices of the words to keep once every loop in `words` is collapsed to one copy: a run
    of one word repeated 4+ times ("No o o o o o vén"; "non, non, non" is Galician) or of 2 to
    `longest_unit` words repeated 3+ times, anywhere in the text. Punctuation and case are ignored."""
    keys = ["".join(ch for ch in word.lower() if ch.isalnum()) for word in words]
    kept, index = [], 0
    while index < len(keys):
        unit, repeats = _widest_loop(keys, index, longest_unit)
        if unit:  # keep the first copy, drop the repeats
            kept += range(index, index + unit)
            index += unit * repeats
        else:
            kept.append(index)
            index += 1
    return kept


def _widest_loop(keys: list[str], index: int, longest_unit: int) -> tuple[int, int]:
    """(unit length, repeats) of the loop starting at `index` that covers the most words; (0, 0) if none."""
    best = (0, 0)
    for unit in range(1, min(longest_unit, len(keys) - index) + 1):
        pattern, repeats = keys[index: index + unit], 1
        while keys[index + repeats * unit: index + (repeats + 1) * unit] == pattern:
            repeats += 1
        if repeats >= (4 if unit == 1 else 3) and unit * repeats > best[0] * best[1]:
            best = (unit, repeats)
    return best


def collapse_repetitions(text: str) -> str:
    """`text` with every loop collapsed to one copy (`unrepeated`), and letters looping inside a word too."""
    words = _LETTER_LOOP.sub(r"\1", text).split()
    return " ".join(words[i] for i in unrepeated(words))


def clean_segment(segment: Segment) -> Segment | None:
    """The segment with its loops collapsed (its timed words too); None when nothing worth keeping
    is left (no letters or digits, e.g. a hallucinated "..." on noise, or still repetitive)."""
    # The text comes from the tokens; the words only time them (faster-whisper hands a word that
    # straddles two segments to the first), so each is collapsed on its own.
    text = collapse_repetitions(segment.text)
    words = [dataclasses.replace(word, text=_LETTER_LOOP.sub(r"\1", word.text)) for word in segment.words]
    words = tuple(words[i] for i in unrepeated([word.text for word in words]))
    if not any(ch.isalnum() for ch in text) or is_degenerate(text):
        return None
    return segment if (text, words) == (segment.text, segment.words) else \
        dataclasses.replace(segment, text=text, words=words)


def cleaned_segments(segments: list[Segment]) -> list[Segment]:
    """Every segment through `clean_segment`; the dropped ones logged."""
    kept = []
    for segment in segments:
        cleaned = clean_segment(segment)
        if cleaned is None:
            logger.warning("dropped a degenerate segment at %.1f-%.1f s: %.60r", segment.start, segment.end,
                           segment.text)
        else:
            kept.append(cleaned)
    return kept


def is_noise(segment: Segment, waveform: np.ndarray) -> bool:
    """Whether a decoded segment is the model's invention over sound without speech: the decoder
    doubts it (its window's no-speech probability over NO_SPEECH_PROBABILITY, its log-probability
    under LOGPROB_THRESHOLD, or a loop) and the detector hears a voice in less than
    MIN_SPEECH_SHARE of the segment's audio (`waveform`: the audio the segment is timed in)."""
    if not doubted(segment):
        return False
    audio = waveform[round(segment.start * SAMPLING_RATE): round(segment.end * SAMPLING_RATE)]
    return speech_share(audio) < MIN_SPEECH_SHARE


def doubted(segment: Segment) -> bool:
    """The decoder's own doubt about a segment; with none of its statistics (a backend that gives
    none), always: the detector then decides alone."""
    signals = [segment.no_speech_prob is not None and segment.no_speech_prob > NO_SPEECH_PROBABILITY,
               segment.avg_logprob is not None and segment.avg_logprob < LOGPROB_THRESHOLD,
               segment.compression_ratio is not None and segment.compression_ratio > TEXT_COMPRESSION_RATIO_THRESHOLD]
    known = (segment.no_speech_prob, segment.avg_logprob, segment.compression_ratio) != (None, None, None)
    return any(signals) or not known


def spoken_segments(segments: list[Segment], waveform: np.ndarray) -> list[Segment]:
    """The segments that are not `is_noise`; the dropped ones logged."""
    kept = []
    for segment in segments:
        if is_noise(segment, waveform):
            logger.info("dropped a segment heard as noise at %.1f-%.1f s (no-speech probability %s, "
                        "log-probability %s): %.60r", segment.start, segment.end, _rounded(segment.no_speech_prob),
                        _rounded(segment.avg_logprob), segment.text)
        else:
            kept.append(segment)
    return kept


def _rounded(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


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

    model: local folder, Hub id or built-in name (default: options.model, else `default_model()`).
    options / decoding: how to load and how to decode; keyword settings override their fields
    (backend, device, compute_type, num_workers; language, task, beam_size, temperatures,
    timestamps, vad_filter: see whisper_gl.config).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, options: ModelOptions | None = None,
                 decoding: DecodingOptions | None = None, **settings):
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
        """Transcribe a file path or bytes (any format ffmpeg reads) or a 16 kHz mono waveform:
        `transcribe_segments`, collected.

        `decoding` (default: the engine's) and keyword settings (language, task, beam_size, ...)
        apply to this call only.
        """
        began = time.perf_counter()
        stream = self.transcribe_segments(audio, decoding, **settings)
        segments = list(stream)
        return Transcription(
            text=" ".join(segment.text for segment in segments),
            segments=segments,
            language=stream.language,
            duration=stream.duration,
            elapsed=time.perf_counter() - began,
            backend=self.backend,
            model=self.model,
        )

    def transcribe_segments(self, audio: Audio, decoding: DecodingOptions | None = None,
                            **settings) -> "SegmentStream":
        """The recording's segments in order, each as soon as the engine has decoded it (as
        faster-whisper's transcribe() yields them): the same decode as `transcribe`, which collects
        them. The audio is read now (a bad file raises here); decoding happens while iterating.

            stream = engine.transcribe_segments("talk.mp3")
            for segment in stream:
                print(segment.start, segment.text)
            stream.language, stream.duration
        """
        options = self.decoding_for(decoding, **settings)
        waveform = as_waveform(audio)
        return SegmentStream(self._pieces(waveform, options), language=options.forced_language or "",
                             duration=round(len(waveform) / SAMPLING_RATE, 3))

    def decoding_for(self, decoding: DecodingOptions | None = None, **settings) -> DecodingOptions:
        """The decoding options of one call: `decoding` (default: the engine's), keyword settings over it."""
        options = decoding or self.decoding
        return dataclasses.replace(options, **settings) if settings else options

    def decode_window(self, waveform: np.ndarray, decoding: DecodingOptions, window: Window | None = None) -> Decoded:
        """Audio no longer than one window, decoded in one pass (no seeking) with the guards of
        every decode: temperature fallback and token budget per decode, noise heard as speech
        dropped (require_speech), loops collapsed and degenerate segments dropped. The live
        stream's step. `window`: a shorter window to encode it in, where the backend can (CTranslate2)."""
        timestamps = self._timestamps_wanted(decoding)
        waveform = waveform[: self.window.samples]
        decoded = self._backend.decode_chunks([waveform], decoding, timestamps, window)[0]
        return dataclasses.replace(decoded, segments=self._guarded(decoded.segments, waveform, decoding))

    def _timestamps_wanted(self, options: DecodingOptions) -> bool:
        # A short window (10 s) cuts sentences at most seams, and there a short-window model's
        # timestamps repeat and invent text (long.mp3, 10 s smoke model: WER 115 % with its
        # timestamps, 52 % on voice-activity chunks, 4x faster). Chunks split at pauses instead.
        return not (options.timestamps == "vad" or (options.timestamps == "auto" and not self.window.is_pretrained))

    def _pieces(self, waveform: np.ndarray, options: DecodingOptions) -> Iterator[Decoded]:
        """The recording decoded piece by piece, in order, each piece's segments through the guards;
        nothing at all where there is nothing to hear."""
        if is_inaudible(waveform) or (options.require_speech and not has_speech(waveform)):
            return
        for piece in self._decode(waveform, options):
            yield dataclasses.replace(piece, segments=self._guarded(piece.segments, waveform, options))

    @staticmethod
    def _guarded(segments: list[Segment], waveform: np.ndarray, options: DecodingOptions) -> list[Segment]:
        """The guards of every decode: noise heard as speech dropped (require_speech), loops collapsed."""
        return cleaned_segments(spoken_segments(segments, waveform) if options.require_speech else segments)

    def _decode(self, waveform: np.ndarray, options: DecodingOptions) -> Iterator[Decoded]:
        if not self._timestamps_wanted(options):
            return self._decode_chunks(waveform, options, timestamps=False)
        if options.long_form == "batched":
            pieces = self._decode_chunks(waveform, options, timestamps=True)
        else:
            pieces = self._backend.decode_sequential(waveform, options)
        if options.timestamps != "auto":
            return pieces
        return timed_or_else(pieces, lambda: self._decode_chunks(waveform, options, timestamps=False))

    def _decode_chunks(self, waveform: np.ndarray, options: DecodingOptions, timestamps: bool) -> Iterator[Decoded]:
        """Voice-activity chunks decoded in batches, their segments moved to their places in the
        recording; a piece per chunk, in order, as soon as everything before it is decoded.

        With timestamps, neighbouring spans are joined, pauses included, up to a window (the
        encoder pays for a whole window per chunk anyway: fewer chunks, less time),
        and a chunk whose model stopped before its speech did (a segment left open) has the rest
        decoded in the next batch, as Whisper's long-form decoding moves to its last timestamp.
        Without, each span stays a sentence-sized segment.
        """
        spans = speech_spans(waveform, self.window.seconds)
        pending = joined_speech(spans, self.window.samples) if timestamps else [Chunk((span,)) for span in spans]
        decoded: list[tuple[int, Decoded]] = []  # (chunk start, its piece), waiting for what comes before
        while pending:
            batch, pending = pending[: options.batch_size], pending[options.batch_size:]
            results = self._backend.decode_chunks([chunk.audio(waveform) for chunk in batch], options, timestamps)
            for chunk, result in zip(batch, results, strict=True):
                kept, left = heard(result, chunk)
                segments = sorted((chunk.placed(segment) for segment in kept), key=lambda segment: segment.start)
                decoded.append((chunk.start, dataclasses.replace(result, segments=segments)))
                pending += [left] if left else []
            if options.forced_language is None:  # detected once, on the first chunk, then kept
                options = dataclasses.replace(options, language=next(filter(None, (r.language for r in results)), None))
            pending.sort(key=lambda chunk: chunk.start)  # the rest of a chunk comes before the chunks after it
            decoded.sort(key=lambda item: item[0])
            done = pending[0].start if pending else math.inf
            while decoded and decoded[0][0] < done:
                yield decoded.pop(0)[1]


class SegmentStream(Iterator[Segment]):
    """The segments of one recording as the engine decodes them (Transcriber.transcribe_segments).
    `language`: the one forced, else the one detected once the first piece is decoded;
    `duration`: seconds of audio. close() stops the decode (a client gone)."""

    def __init__(self, pieces: Iterator[Decoded], language: str, duration: float):
        self._pieces, self.language, self.duration = pieces, language, duration
        self._ready: list[Segment] = []

    def __iter__(self) -> "SegmentStream":
        return self

    def __next__(self) -> Segment:
        while not self._ready:
            piece = next(self._pieces)  # StopIteration: the recording is done
            self.language = self.language or piece.language
            self._ready = list(piece.segments)
        return self._ready.pop(0)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


def timed_or_else(pieces: Iterator[Decoded], untimed) -> Iterator[Decoded]:
    """`pieces` as they come once the model has closed a segment with a timestamp (held until
    then); if it closes none but wrote text or stalled (a checkpoint that lost timestamp
    prediction), the pieces of `untimed()` instead: decoded the way it was trained, no timestamps."""
    held: list[Decoded] = []
    for piece in pieces:
        held.append(piece)
        if piece.predicted_timestamps:
            yield from held
            yield from pieces
            return
    if any(piece.segments or piece.stalled for piece in held):
        logger.info("the model predicts no timestamps: decoding voice-activity chunks without them")
        yield from untimed()
    else:
        yield from held


@dataclass(frozen=True)
class Chunk:
    """Spans of speech (sample indices into the recording) decoded as one piece of audio: from
    the first one's start to the last one's end, pauses included."""

    spans: tuple[tuple[int, int], ...]

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]

    @property
    def speech(self) -> int:
        """Samples of speech in the chunk (its pauses left out)."""
        return sum(end - start for start, end in self.spans)

    def audio(self, waveform: np.ndarray) -> np.ndarray:
        return waveform[self.start: self.end]

    def recording_time(self, seconds: float) -> float:
        """A time in the chunk's audio as a time in the recording (never past the chunk)."""
        return min(self.start + max(0, round(seconds * SAMPLING_RATE)), self.end) / SAMPLING_RATE

    def after(self, seconds: float) -> "Chunk":
        """The speech of this chunk after `seconds` of its audio."""
        moment = round(self.recording_time(seconds) * SAMPLING_RATE)
        return Chunk(tuple((max(start, moment), end) for start, end in self.spans if end > moment))

    def placed(self, segment: Segment) -> Segment:
        """A segment timed inside the chunk's audio, timed in the recording; its words kept
        inside it and in order."""
        start, end = self.recording_time(segment.start), self.recording_time(segment.end)
        words, previous = [], start
        for word in segment.words:
            word_start = min(max(self.recording_time(word.start), previous), end)
            previous = min(max(self.recording_time(word.end), word_start), end)
            words.append(dataclasses.replace(word, start=round(word_start, 3), end=round(previous, 3)))
        return dataclasses.replace(segment, start=round(start, 3), end=round(max(end, start), 3), words=tuple(words))


def heard(result: Decoded, chunk: Chunk) -> tuple[list[Segment], Chunk | None]:
    """The segments of the chunk to keep, and what is still to decode: the speech after the last
    segment the model closed, when it lasts MIN_UNHEARD_SECONDS or more (a segment left open
    there is dropped and decoded again, as Whisper's long-form decoding does)."""
    closed = result.segments[:-1] if result.open_end else result.segments
    if not result.predicted_timestamps or not closed or closed[-1].end <= 0:
        return result.segments, None  # no timestamp to move to, or no progress: keep what there is
    rest = chunk.after(closed[-1].end)
    if not rest.spans or rest.speech < MIN_UNHEARD_SECONDS * SAMPLING_RATE:
        return result.segments, None
    return closed, rest


def joined_speech(spans: list[tuple[int, int]], max_samples: int) -> list[Chunk]:
    """Neighbouring spans grouped, pauses included, while the whole fits in `max_samples`.
    (Leaving the pauses out packs more speech in a window but made the demo model loop.)"""
    chunks: list[list[tuple[int, int]]] = []
    for span in spans:
        if chunks and span[1] - chunks[-1][0][0] <= max_samples:
            chunks[-1].append(span)
        else:
            chunks.append([span])
    return [Chunk(tuple(chunk)) for chunk in chunks]

