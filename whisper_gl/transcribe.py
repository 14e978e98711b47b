"""The transcription engine: one object that turns audio into timed text.

    from whisper_gl.transcribe import Transcriber
    result = Transcriber("artifacts/model").transcribe("talk.mp3")
    print(result.text); open("talk.srt", "w").write(result.to_srt())

It loads a local model folder or a Hub id and picks a backend (whisper_gl.backends): the
CTranslate2 int8 export (`<model>/ctranslate2`, written by `whisper-gl export`) on CPU when
it exists, else transformers. Audio of any length is transcribed whole. By default
(long_form="batched") its speech, found by faster-whisper's Silero VAD, is packed into chunks of
at most one window (the pauses between sentences cut out), decoded in batches as text only, and
cut into sentence-sized segments timed by their words' alignment (timestamps="aligned"); with
timestamps="model" the chunks keep their pauses and the model's timestamps time the segments;
long_form="sequential" is Whisper's long-form algorithm, window after window. Loops are bounded
(tokens per second of audio), retried at higher temperature, and a repetition that survives is
collapsed to one copy (or the segment dropped). A checkpoint that no longer predicts timestamps still gets timed
segments: sentence-sized chunks decoded without timestamps, each timed by its bounds.

How to load is a `ModelOptions`, how to decode a `DecodingOptions` (whisper_gl.config); the
keyword arguments of `Transcriber(...)` and `transcribe(...)` set their fields by name.

Command line:  whisper-gl transcribe PATH... [--output-dir OUT] [--format txt,srt,vtt,json] ...
(whisper_gl.batch: files, folders and globs through one engine).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import ARTIFACTS_DIR, OFFLINE_BASE_DIR
from .audio import Audio, as_waveform
from .backends import SENTENCE_ENDS, TEXT_COMPRESSION_RATIO_THRESHOLD, Decoded, check_backend_name, load_backend
from .config import MODEL_ENV, DecodingOptions, LiveOptions, ModelOptions
from .runtime import no_onnxruntime_telemetry, passive_openmp_waits
from .subtitles import Segment, Word, to_srt, to_vtt
from .window import SAMPLING_RATE, Window

if TYPE_CHECKING:
    from .streaming import LiveTranscript

__all__ = ["Segment", "Word", "Transcription", "Transcriber", "default_model", "ModelOptions", "DecodingOptions"]

logger = logging.getLogger(__name__)

# Pauses that end a voice-activity span: sentence breaks, not breaths.
VAD_MIN_SILENCE_MS = 500
TRAINED_MODEL_DIR = f"{ARTIFACTS_DIR}/model"
# Shorter than this, quieter than this peak (-60 dBFS), or without speech for the VAD
# (DecodingOptions.require_speech), there is nothing to transcribe: Whisper would only
# hallucinate on it ("Mónido de Vígrima." on a 20 s tone), so the engine returns no text.
MIN_SPEECH_SECONDS = 0.2
MIN_VOICE_SECONDS = 0.25  # speech the detector must hear before the engine decodes (require_speech)
SILENCE_PEAK = 1e-3
VAD_LISTEN_SECONDS = 30.0  # has_speech: the voice-activity detector's window
# A chunk whose decode stopped with this much voice activity still ahead is decoded on from there.
MIN_UNHEARD_SECONDS = 1.0


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

    def to_text(self) -> str:
        return self.text + "\n" if self.text else ""

    def to_srt(self) -> str:
        return to_srt(self.segments)

    def to_vtt(self, highlight_words: bool = False) -> str:
        return to_vtt(self.segments, highlight_words)

    def to_dict(self) -> dict:
        """Everything but the timing of the run, in plain types (the JSON output)."""
        return {"text": self.text, "language": self.language, "duration": self.duration, "model": self.model,
                "backend": self.backend, "segments": [dataclasses.asdict(segment) for segment in self.segments]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"


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
        segments = cleaned_segments(decoded.segments)
        return Transcription(
            text=" ".join(segment.text for segment in segments),
            segments=segments,
            language=decoded.language,
            duration=round(duration, 3),
            elapsed=time.perf_counter() - began,
            backend=self.backend,
            model=self.model,
        )

    def stream(self, decoding: DecodingOptions | None = None, *, live: LiveOptions | None = None,
               keep_audio: bool = True, max_seconds: float | None = None, **settings) -> "LiveTranscript":
        """A live transcript of audio that arrives while it is spoken (whisper_gl.streaming):

            live = engine.stream()
            update = live.push(samples, sampling_rate=48000)   # update.confirmed, update.tentative
            result = live.finish()                              # the whole recording, decoded again

        `decoding` and keyword settings as for transcribe(); `live`: how often to decode and how
        much audio to hold (LiveOptions); keep_audio: keep the recording for finish()'s full
        decode; max_seconds: refuse audio past this length (AudioTooLong).
        """
        from .streaming import LiveTranscript

        options = dataclasses.replace(decoding or self.decoding, **settings) if settings else (decoding or self.decoding)
        return LiveTranscript(self, options, live or LiveOptions(), keep_audio=keep_audio, max_seconds=max_seconds)

    def decode_window(self, waveform: np.ndarray, decoding: DecodingOptions, window: Window | None = None) -> Decoded:
        """Audio no longer than one window, decoded in one pass (no seeking) with the guards of
        every decode: temperature fallback and token budget per decode, loops collapsed and
        degenerate segments dropped. The live stream's step. `window`: a shorter window to
        encode it in, where the backend can (CTranslate2)."""
        timestamps = self._timestamps_wanted(decoding)
        decoded = self._backend.decode_chunks([waveform[: self.window.samples]], decoding, timestamps, window)[0]
        return dataclasses.replace(decoded, segments=cleaned_segments(decoded.segments))

    def _timestamps_wanted(self, options: DecodingOptions) -> bool:
        # A short window (10 s) cuts sentences at most seams, and there a short-window model's
        # timestamps repeat and invent text (long.mp3, 10 s smoke model: WER 115 % with its
        # timestamps, 52 % on voice-activity chunks, 4x faster). Chunks split at pauses instead.
        return not (options.timestamps == "vad" or (options.timestamps == "auto" and not self.window.is_pretrained))

    def _timing(self, options: DecodingOptions) -> str:
        """How the segments get their times: "model" (the model's timestamps), "aligned" (text-only
        chunks cut into sentences by their aligned words) or "vad" (one span, one segment)."""
        if not self._timestamps_wanted(options):
            return "vad"
        batched_default = options.timestamps == "auto" and options.long_form == "batched"
        return "aligned" if options.timestamps == "aligned" or batched_default else "model"

    def _decode(self, waveform: np.ndarray, options: DecodingOptions) -> Decoded:
        timing = self._timing(options)
        if timing != "model":
            return self._decode_chunks(waveform, options, timing)
        if options.long_form == "batched":
            decoded = self._decode_chunks(waveform, options, timing)
        else:
            decoded = self._backend.decode(waveform, options)
        if options.timestamps == "auto" and not decoded.predicted_timestamps and (decoded.segments or decoded.stalled):
            # The model wrote text but closed no segment with a timestamp: a checkpoint that
            # lost timestamp prediction. Decode the way it was trained instead: no timestamps.
            logger.info("the model predicts no timestamps: decoding voice-activity chunks without them")
            decoded = self._decode_chunks(waveform, options, "vad")
        return decoded

    def _decode_chunks(self, waveform: np.ndarray, options: DecodingOptions, timing: str) -> Decoded:
        """Voice-activity chunks decoded in batches, their segments moved to their places in the recording.

        "model": neighbouring spans are joined, pauses included, up to a window (the encoder
        pays for a whole window per chunk anyway: fewer chunks, less time), and a chunk whose
        model stopped before its speech did (a segment left open) has the rest decoded in the
        next round, as Whisper's long-form decoding moves to its last timestamp.
        "aligned": the spans are packed up to a window with the pauses between them cut out (as
        faster-whisper's batched pipeline does: fewer windows), each chunk decoded as text only,
        then cut into sentences timed by its aligned words.
        "vad": each span stays a sentence-sized segment.
        """
        spans = speech_spans(waveform, self.window.seconds)
        if timing == "vad":
            chunks = [Chunk((span,)) for span in spans]
        else:
            chunks = joined_speech(spans, self.window.samples, max_pause=0 if timing == "aligned" else None)
        decoding = dataclasses.replace(options, word_timestamps=True) if timing == "aligned" else options
        segments, languages, predicted, stalled = [], [], False, False
        while chunks:
            results = self._backend.decode_chunks([chunk.audio(waveform) for chunk in chunks], decoding,
                                                  timing == "model")
            rest = []
            for chunk, result in zip(chunks, results, strict=True):
                stalled = stalled or result.stalled
                kept, left = heard(result, chunk)
                placed = [chunk.placed(segment) for segment in kept]
                if timing == "aligned":
                    placed = [cut for segment in placed for cut in chunk.sentences(segment, options.word_timestamps)]
                segments += placed
                rest += [left] if left else []
                languages.append(result.language)
                predicted = predicted or result.predicted_timestamps
            if options.forced_language is None and any(languages):  # detected once, then kept
                language = next(filter(None, languages))
                options, decoding = (dataclasses.replace(o, language=language) for o in (options, decoding))
            chunks = rest
        segments.sort(key=lambda segment: segment.start)
        return Decoded(segments, options.forced_language or next(filter(None, languages), ""), predicted,
                       stalled=stalled)


@dataclass(frozen=True)
class Chunk:
    """Spans of speech (sample indices into the recording) decoded as one piece of audio: from
    the first one's start to the last one's end, each pause between them cut to at most
    `max_pause` samples (None: pauses kept whole)."""

    spans: tuple[tuple[int, int], ...]
    max_pause: int | None = None

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

    @property
    def pieces(self) -> tuple[tuple[int, int], ...]:
        """(start, end) in the recording of the pieces of audio the chunk is made of, in order:
        each span with the part of the pause before it that is kept."""
        pieces, previous_end = [], None
        for start, end in self.spans:
            pause = 0 if previous_end is None else start - previous_end
            kept = pause if self.max_pause is None else min(pause, self.max_pause)
            pieces.append((start - kept, end))
            previous_end = end
        return tuple(pieces)

    @property
    def samples(self) -> int:
        return sum(end - start for start, end in self.pieces)

    def audio(self, waveform: np.ndarray) -> np.ndarray:
        pieces = self.pieces
        if len(pieces) == 1 or all(pieces[i][0] == pieces[i - 1][1] for i in range(1, len(pieces))):
            return waveform[self.start: self.end]
        return np.concatenate([waveform[start:end] for start, end in pieces])

    def recording_time(self, seconds: float) -> float:
        """A time in the chunk's audio as a time in the recording (never past the chunk)."""
        offset = max(0, round(seconds * SAMPLING_RATE))
        for start, end in self.pieces:
            if offset < end - start:
                return (start + offset) / SAMPLING_RATE
            offset -= end - start
        return self.end / SAMPLING_RATE

    def after(self, seconds: float) -> "Chunk":
        """The speech of this chunk after `seconds` of its audio."""
        moment = round(self.recording_time(seconds) * SAMPLING_RATE)
        return Chunk(tuple((max(start, moment), end) for start, end in self.spans if end > moment), self.max_pause)

    def sentences(self, segment: Segment, keep_words: bool) -> list[Segment]:
        """A segment of this chunk (timed in the recording, with its words) cut into sentences:
        after a word that ends one (. ? ! …) and between words in different spans of speech (a
        pause of VAD_MIN_SILENCE_MS or more came between them); each piece timed by its words,
        which it keeps when `keep_words`. A segment without words is kept whole."""
        pieces: list[list[Word]] = []
        for word in segment.words:
            if pieces and not (pieces[-1][-1].text.rstrip()[-1:] in SENTENCE_ENDS
                               or self._span_of(word) != self._span_of(pieces[-1][-1])):
                pieces[-1].append(word)
            else:
                pieces.append([word])
        cut = [Segment(piece[0].start, max(piece[-1].end, piece[0].start), "".join(w.text for w in piece).strip(),
                       tuple(piece) if keep_words else ()) for piece in pieces]
        return [segment for segment in cut if segment.text] or [dataclasses.replace(segment, words=())
                                                                if not keep_words else segment]

    def _span_of(self, word: Word) -> int:
        """The index of the span the middle of a word (timed in the recording) falls in or before."""
        middle = (word.start + word.end) / 2 * SAMPLING_RATE
        return bisect.bisect_left([end for _, end in self.spans], middle)

    def placed(self, segment: Segment) -> Segment:
        """A segment timed inside the chunk's audio, timed in the recording; its words kept
        inside it and in order."""
        start, end = self.recording_time(segment.start), self.recording_time(segment.end)
        words, previous = [], start
        for word in segment.words:
            word_start = min(max(self.recording_time(word.start), previous), end)
            previous = min(max(self.recording_time(word.end), word_start), end)
            words.append(dataclasses.replace(word, start=round(word_start, 3), end=round(previous, 3)))
        return Segment(round(start, 3), round(max(end, start), 3), segment.text, tuple(words))


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


def joined_speech(spans: list[tuple[int, int]], max_samples: int, max_pause: int | None = None) -> list[Chunk]:
    """Neighbouring spans grouped while the chunk they make (pauses cut to `max_pause`
    samples, None: kept whole) fits in `max_samples`. Decoded with the model's timestamps, the
    pauses stay (leaving them out made an earlier demo model loop, WER 45.7 against 39.8);
    decoded as text only, they go: 4 windows instead of 5 for long.mp3."""
    chunks: list[Chunk] = []
    for span in spans:
        joined = Chunk((*chunks[-1].spans, span), max_pause) if chunks else None
        if joined is not None and joined.samples <= max_samples:
            chunks[-1] = joined
        else:
            chunks.append(Chunk((span,), max_pause))
    return chunks


def main(argv: list[str] | None = None):
    from .cli import invoke_verb

    return invoke_verb(("transcribe",), argv)


if __name__ == "__main__":
    from .cli import door

    door("transcribe", prog="python -m whisper_gl.transcribe")
