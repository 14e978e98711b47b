"""The decoders behind the transcription engine, registered by name: transformers and CTranslate2.

Both decode a list of chunks (at most one window each, cut by the engine at pauses) in
batches, and whole recordings with Whisper's long-form algorithm (sequential windows that move
with the predicted timestamps). Either way with the loop guards of the original paper, per
chunk or window: no conditioning on earlier text, and an output that compresses too well
(repetition), scores too low or runs out of its token budget is decoded again at a higher
temperature.

A backend is a class with the `Backend` shape, registered with `@register_backend`; the
engine (whisper_gl.transcribe) picks one by name, or the first registered one that suits a
model folder (`auto`), and hands it one `DecodingOptions` per call. It returns `Decoded`;
the engine adds the guards that do not depend on the decoder.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Protocol

import numpy as np

from . import WhisperGLError
from .config import DecodingOptions, ModelOptions
from .transcript import Segment, Word
from .window import FRAMES_PER_SECOND, SAMPLING_RATE, TIME_PRECISION, Window

logger = logging.getLogger(__name__)

# Thresholds of the temperature fallback and the no-speech skip of Whisper's reference decoder
# (the temperatures themselves are a DecodingOptions field).
TEXT_COMPRESSION_RATIO_THRESHOLD = 2.4  # zlib ratio of the decoded text (openai-whisper, faster-whisper)
# transformers measures the ratio on token ids, not text; its documented equivalent of 2.4 is 1.35.
TOKEN_COMPRESSION_RATIO_THRESHOLD = 1.35
LOGPROB_THRESHOLD = -1.0
# No "no speech" skip in the decoders: on out-of-domain speech a window that loops at every
# temperature also scores low, and the skip (no_speech_prob > 0.6 and logprob < -1) then drops
# 30 s of real speech without a word (seen on the sample corpus with the base model). The
# backends report each window's no-speech probability instead, and the engine drops a segment
# only where the decoder doubts it AND the voice-activity detector hears almost no voice in it
# (whisper_gl.transcribe.is_noise).
NO_SPEECH_THRESHOLD = None
# Fast Galician speech is ~3.5 words/s, ~2.5 tokens a word, plus timestamp pairs: 12 tokens
# per second of audio is a generous ceiling that still stops a runaway loop early.
MAX_TOKENS_PER_SECOND = 12
MIN_NEW_TOKENS = 8

# Sampling at a fallback temperature keeps the best of this many candidates (openai-whisper's best_of).
BEST_OF = 5
# faster-whisper's (and openai-whisper's) defaults for attaching punctuation to timed words.
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"

CTRANSLATE2_SUBDIR = "ctranslate2"


@dataclass
class Decoded:
    """What a backend found: timed segments, the language, whether the model itself closed
    any segment with a timestamp (False: it does not predict them), whether the decode
    was abandoned because its timestamps stopped moving forward, and whether the last
    segment is still open (the model stopped without closing it: cut short)."""

    segments: list[Segment]
    language: str
    predicted_timestamps: bool
    stalled: bool = False
    open_end: bool = False


def max_new_tokens(seconds: float, prompt_tokens: int, max_target_positions: int) -> int:
    """Tokens a window of `seconds` may produce: bounded by the audio, not by the model."""
    bound = math.ceil(seconds * MAX_TOKENS_PER_SECOND) + MIN_NEW_TOKENS
    return max(1, min(bound, max_target_positions // 2 - prompt_tokens))


def ctranslate2_max_length(prompt_tokens: int, budget: int) -> int:
    """The `max_length` that lets CTranslate2's Whisper generate `budget` new tokens: it stops
    at min(max_length / 2, max_length - prompt) (openai-whisper's half-context sample length,
    CTranslate2 issue #1856), so the prompt plus the budget alone would halve the budget."""
    return max(2 * budget, prompt_tokens + budget)


@dataclass
class Attempt:
    """One decode of one chunk at one temperature, and how it scores against the fallback rules."""

    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    over_budget: bool  # it used every token it was allowed: a runaway loop
    temperature: float = 0.0
    no_speech_prob: float | None = None

    @property
    def repetitive(self) -> bool:
        return self.over_budget or self.compression_ratio > TEXT_COMPRESSION_RATIO_THRESHOLD

    @property
    def passes(self) -> bool:
        return not self.repetitive and self.avg_logprob >= LOGPROB_THRESHOLD

    def statistics(self) -> dict:
        """What a Segment carries of the attempt it came from."""
        return dict(temperature=self.temperature, avg_logprob=self.avg_logprob,
                    compression_ratio=self.compression_ratio, no_speech_prob=self.no_speech_prob)

    def rank(self) -> tuple:
        """When every temperature fails: the likeliest of the non-repetitive ones (openai-whisper's choice)."""
        return (self.passes, not self.repetitive, self.avg_logprob)


def split_at_timestamps(tokens: list[int], timestamp_begin: int, duration: float) -> list[dict]:
    """Timed pieces of one chunk's tokens: a timestamp after text closes a piece, one before
    text opens the next. Text left unclosed runs to the chunk's end; no timestamps at all make
    one piece over the chunk. Dicts in the shape faster-whisper's word timing expects."""
    pieces, text, start = [], [], 0.0
    for token in tokens:
        if token < timestamp_begin:
            text.append(token)
            continue
        seconds = min((token - timestamp_begin) * TIME_PRECISION, duration)
        if text:
            pieces.append(dict(seek=0, start=start, end=seconds, tokens=text, closed=True))
            text = []
        start = seconds
    if text or not pieces:
        pieces.append(dict(seek=0, start=start, end=duration, tokens=text, closed=False))
    return pieces


class Backend(Protocol):
    """What the engine needs from a decoder."""

    name: ClassVar[str]
    window: Window  # the model's window (30 s for a pretrained Whisper)

    def __init__(self, folder: Path, options: ModelOptions) -> None: ...

    @classmethod
    def suits(cls, folder: Path, options: ModelOptions) -> bool:
        """Whether `auto` should pick this backend for the model in `folder`."""

    def decode_sequential(self, audio: np.ndarray, options: DecodingOptions) -> Iterator[Decoded]:
        """Sequential long-form decoding with timestamps over the whole recording, in order, as it is
        decoded: a Decoded for each piece the decoder finishes (a segment, or a whole recording)."""

    def decode_chunks(self, chunks: list[np.ndarray], options: DecodingOptions, timestamps: bool,
                      window: Window | None = None) -> list[Decoded]:
        """Each chunk (at most one window long) on its own, options.batch_size at a time, with the
        temperature fallback per chunk; its segments timed from the chunk's start: by the model's
        timestamps when `timestamps` (and the model predicts them), else one segment over the chunk.
        Words are timed when options.word_timestamps; options.initial_prompt conditions every chunk.
        The language is detected once, on the first chunk. `window`: encode the chunks padded to
        this shorter window instead of the model's (the encoder's cost follows its input: the live
        stream's short buffers), where the backend can; others use the model's window."""


# Name -> class, in the order `auto` tries them (the fastest first).
BACKENDS: dict[str, type[Backend]] = {}


def register_backend(backend: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend available to the engine under its `name`."""
    BACKENDS[backend.name] = backend
    return backend


def has_transformers_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def ctranslate2_export(folder: Path) -> Path | None:
    """The CTranslate2 model for a model folder: its `ctranslate2/` export, or the folder
    itself when it is a bare CTranslate2 model (model.bin without config for transformers)."""
    if (folder / CTRANSLATE2_SUBDIR / "model.bin").is_file():
        return folder / CTRANSLATE2_SUBDIR
    if (folder / "model.bin").is_file() and not (folder / "model.safetensors").exists():
        return folder
    return None


class _GenerateNoise(logging.Filter):
    """Drop transformers' per-window warnings about what Whisper's own generate sets."""

    NOISE = ("seem to have been set", "Passing `generation_config` together", "attention mask is not set")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(noise in record.getMessage() for noise in self.NOISE)


_GENERATE_NOISE = _GenerateNoise()


@functools.cache
def _whisper_model_class() -> type:
    """faster-whisper's WhisperModel, able to run models with windows shorter than 30 s.

    faster-whisper 1.2 cuts the features into windows of the export's chunk_length, then pads
    each one to 3000 frames (`pad_or_trim`) before encoding, while CTranslate2's encoder takes
    exactly its own window (1000 frames for a 10 s model). Dropping that padding in `encode`
    gives the encoder its window; a 30 s model sees no change.
    """
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):
        def encode(self, features):
            return super().encode(features[..., : self.feature_extractor.nb_max_frames])

        def add_word_timestamps(self, segments, *args, **kwargs):
            # faster-whisper moves each segment to its first and last word (short.mp3: 0-2.8 s
            # instead of the model's 0-3.52 s); the engine keeps the model's bounds, so a
            # segment has the same times with its words timed as without (an SRT of the same audio).
            bounds = [[(segment["start"], segment["end"]) for segment in chunk] for chunk in segments]
            last_speech = super().add_word_timestamps(segments, *args, **kwargs)
            for chunk, chunk_bounds in zip(segments, bounds):
                for segment, (start, end) in zip(chunk, chunk_bounds):
                    segment["start"], segment["end"] = start, end
            return last_speech

    return WindowedWhisperModel


@register_backend
class CTranslate2Backend:
    """faster-whisper on a CTranslate2 export (int8 on CPU): the fast path."""

    name = "ctranslate2"

    @classmethod
    def suits(cls, folder: Path, options: ModelOptions) -> bool:
        # On a GPU transformers is as fast and exact; a bare CTranslate2 model has no choice.
        return ctranslate2_export(folder) is not None and (
            options.device == "cpu" or not has_transformers_checkpoint(folder))

    def __init__(self, folder: Path, options: ModelOptions):
        export = ctranslate2_export(folder)
        if export is None:
            raise WhisperGLError(
                f"'{folder}' has no CTranslate2 export: run `whisper-gl export --model {folder}`"
            )
        compute_type = options.compute_type
        if compute_type == "default":
            compute_type = "int8" if options.device == "cpu" else "float16"
        try:
            # num_workers > 1 lets that many transcribe() calls from different threads run at once.
            self.model = _whisper_model_class()(str(export), device=options.device, compute_type=compute_type,
                                                num_workers=options.num_workers, cpu_threads=options.cpu_threads)
        except (RuntimeError, ValueError, OSError) as error:
            raise WhisperGLError(f"cannot load the CTranslate2 export in '{export}': {error}") from None
        # The window comes from the export's preprocessor_config.json (chunk_length).
        self.window = Window.of_seconds(self.model.feature_extractor.chunk_length)
        # Timestamp tokens are not in tokenizer.json: they follow <|notimestamps|> (as in faster-whisper).
        self.timestamp_begin = self.model.hf_tokenizer.token_to_id("<|notimestamps|>") + 1
        # -1: faster-whisper's default set (non-speech symbols).
        self.suppress_tokens = [-1, *self.window.timestamps_past_end(self.timestamp_begin)]

    def check(self) -> None:
        """Decode one token of a second of silence: proves the export runs end to end."""
        pieces, _ = self.model.transcribe(np.zeros(SAMPLING_RATE, dtype=np.float32), beam_size=1,
                                          temperature=0.0, max_new_tokens=1, without_timestamps=True)
        list(pieces)

    def decode_sequential(self, audio: np.ndarray, options: DecodingOptions) -> Iterator[Decoded]:
        seconds = min(len(audio) / SAMPLING_RATE, self.window.seconds)
        pieces, info = self.model.transcribe(
            audio,
            language=options.forced_language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=list(options.temperatures),
            compression_ratio_threshold=TEXT_COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            condition_on_previous_text=False,
            without_timestamps=False,
            vad_filter=options.vad_filter,
            word_timestamps=options.word_timestamps,
            # CTranslate2 halves this (see ctranslate2_max_length): ~110 tokens per 30 s window. Kept:
            # the seek picks up after a cut window, and the full budget measured slower and no
            # better on long.mp3 (WER 43.9 against 41.6, as loops ran twice as long).
            max_new_tokens=max_new_tokens(seconds, 4, self.model.max_length),
            suppress_tokens=self.suppress_tokens,
            initial_prompt=options.initial_prompt,
        )
        for piece in pieces:  # a generator: decoding happens while iterating
            predicted = len(piece.tokens) > 1 and piece.tokens[-1] >= self.timestamp_begin
            text = piece.text.strip()
            start, end = round(float(piece.start), 3), round(float(min(piece.end, info.duration)), 3)
            words = tuple(Word(min(max(float(word.start), start), end), min(max(float(word.end), start), end),
                               word.word, float(word.probability)) for word in piece.words or ())
            segments = []
            if text and end > start:  # a timestamp past the end of the audio closes nothing
                segments.append(Segment(
                    start, end, text, words,
                    tokens=tuple(token for token in piece.tokens if token < self.timestamp_begin),
                    temperature=piece.temperature, avg_logprob=piece.avg_logprob,
                    compression_ratio=piece.compression_ratio, no_speech_prob=piece.no_speech_prob))
            yield Decoded(segments, info.language, predicted)

    def decode_chunks(self, chunks: list[np.ndarray], options: DecodingOptions, timestamps: bool,
                      window: Window | None = None) -> list[Decoded]:
        from faster_whisper.tokenizer import Tokenizer

        # CTranslate2's encoder takes fewer frames than the model's window (a 10 s input costs a
        # ninth of 30 s on a 2-core CPU); the decoder's timestamps then end with the shorter window.
        window = window if window is not None and window.frames < self.window.frames else self.window
        suppress = [-1, *window.timestamps_past_end(self.timestamp_begin)]
        decoded, language = [], options.forced_language
        for first in range(0, len(chunks), options.batch_size):
            batch = chunks[first: first + options.batch_size]
            features = np.stack([self._window_features(chunk, window) for chunk in batch])
            encoded = self.model.encode(features)
            language = language or self._detect_language(encoded)
            tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, options.task, language)
            prompt = self.model.get_prompt(tokenizer, prompt_tokens(tokenizer.encode, options.initial_prompt,
                                                                    self.model.max_length),
                                           without_timestamps=not timestamps)
            seconds = [len(chunk) / SAMPLING_RATE for chunk in batch]
            attempts = self._generate_with_fallback(features, encoded, prompt, tokenizer, seconds, options, suppress)
            pieces = [split_at_timestamps(attempt.tokens, tokenizer.timestamp_begin, duration)
                      for attempt, duration in zip(attempts, seconds)]
            if options.word_timestamps:
                self._time_words(pieces, tokenizer, encoded, seconds, window)
            decoded += [self._decoded(chunk_pieces, attempt, tokenizer, language)
                        for chunk_pieces, attempt in zip(pieces, attempts)]
        return decoded

    def _window_features(self, chunk: np.ndarray, window: Window) -> np.ndarray:
        """Log-mel of the chunk padded with silence to the window, as in training (the
        transformers feature extractor pads the audio, not the spectrogram)."""
        padded = np.pad(chunk[:window.samples], (0, max(0, window.samples - len(chunk))))
        return self.model.feature_extractor(padded)[:, : window.frames]

    def _detect_language(self, encoded) -> str:
        ranked = self.model.model.detect_language(encoded)[0]  # the first chunk's languages, likeliest first
        return ranked[0][0].strip("<|>")

    def _generate_with_fallback(self, features: np.ndarray, encoded, prompt: list[int], tokenizer,
                                seconds: list[float], options: DecodingOptions, suppress: list[int]) -> list[Attempt]:
        """Decode the batch; the chunks whose output loops, overruns its budget or scores too low
        are decoded again, together, at the next temperature (the best attempt is kept)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        budgets = [max_new_tokens(duration, len(prompt), self.model.max_length) for duration in seconds]
        timestamps = prompt[-1] != tokenizer.no_timestamps
        suppress = get_suppressed_tokens(tokenizer, suppress)
        best: list[Attempt | None] = [None] * len(seconds)
        pending = list(range(len(seconds)))
        for temperature in options.temperatures:
            sampling = (dict(beam_size=options.beam_size) if temperature == 0 else
                        dict(beam_size=1, num_hypotheses=BEST_OF, sampling_topk=0, sampling_temperature=temperature))
            inputs = encoded if len(pending) == len(seconds) else self.model.encode(features[pending])
            results = self.model.model.generate(
                inputs, [prompt] * len(pending),
                max_length=ctranslate2_max_length(len(prompt), max(budgets[i] for i in pending)),
                return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=suppress,
                **sampling)
            for index, result in zip(pending, results):
                attempt = self._attempt(result, budgets[index], tokenizer, timestamps, temperature)
                if best[index] is None or attempt.rank() > best[index].rank():
                    best[index] = attempt
            pending = [index for index in pending if not best[index].passes]
            if not pending:
                break
        return best

    @staticmethod
    def _attempt(result, budget: int, tokenizer, timestamps: bool, temperature: float) -> Attempt:
        """Scored on what will be kept: with timestamps, up to the last segment the model closed
        (an open tail, even a runaway one, is dropped and decoded again by the engine)."""
        from faster_whisper.transcribe import get_compression_ratio

        tokens = result.sequences_ids[0][:budget]
        # CTranslate2 scores are length-normalised cumulative log-probabilities (length penalty 1).
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        closing = [i for i in range(1, len(tokens)) if tokens[i] >= tokenizer.timestamp_begin
                   and tokens[i - 1] < tokenizer.timestamp_begin] if timestamps else []
        kept = tokens[: closing[-1] + 1] if closing else tokens
        return Attempt(tokens, avg_logprob, get_compression_ratio(tokenizer.decode(kept)),
                       over_budget=len(tokens) >= budget and not closing, temperature=temperature,
                       no_speech_prob=result.no_speech_prob)

    def _time_words(self, pieces: list[list[dict]], tokenizer, encoded, seconds: list[float], window: Window) -> None:
        """Add `words` to every piece: faster-whisper's alignment (cross-attention of the alignment
        heads, dynamic time warping) and its punctuation merging."""
        frames = [min(window.frames, math.ceil(duration * FRAMES_PER_SECOND)) for duration in seconds]
        self.model.add_word_timestamps(pieces, tokenizer, encoded, frames, PREPEND_PUNCTUATIONS,
                                       APPEND_PUNCTUATIONS, last_speech_timestamp=0.0)

    @staticmethod
    def _decoded(pieces: list[dict], attempt: Attempt, tokenizer, language: str) -> Decoded:
        segments = []
        for piece in pieces:
            text = tokenizer.decode(piece["tokens"]).strip()
            words = tuple(Word(float(word["start"]), float(word["end"]), word["word"], float(word["probability"]))
                          for word in piece.get("words") or ())
            if text:
                segments.append(Segment(round(float(piece["start"]), 3), round(float(piece["end"]), 3), text, words,
                                        tokens=tuple(piece["tokens"]), **attempt.statistics()))
        open_end = bool(segments) and not pieces[-1]["closed"] and bool(tokenizer.decode(pieces[-1]["tokens"]).strip())
        return Decoded(segments, language, any(piece["closed"] for piece in pieces), open_end=open_end)


@register_backend
class TransformersBackend:
    """WhisperForConditionalGeneration.generate, long-form (the reference implementation)."""

    name = "transformers"

    @classmethod
    def suits(cls, folder: Path, options: ModelOptions) -> bool:
        return has_transformers_checkpoint(folder)

    def __init__(self, folder: Path, options: ModelOptions):
        import torch
        from transformers import WhisperProcessor

        if not has_transformers_checkpoint(folder):
            raise WhisperGLError(f"'{folder}' holds only a CTranslate2 model: use --backend ctranslate2")
        try:
            self.processor = WhisperProcessor.from_pretrained(folder)
            self.model = _whisper_statistics_class().from_pretrained(folder).to(options.device).eval()
        except (OSError, ValueError) as error:
            raise WhisperGLError(f"cannot load the transformers model in '{folder}': {error}") from None
        logging.getLogger("transformers.generation.utils").addFilter(_GENERATE_NOISE)
        if options.cpu_threads:  # for the whole process: torch has no per-model setting
            torch.set_num_threads(options.cpu_threads)
        self.device = options.device
        # The window comes from the checkpoint (never a hard-coded 30 s).
        self.window = Window.of(self.model.config)
        self.max_target_positions = self.model.config.max_target_positions
        self.timestamp_begin = self.model.generation_config.no_timestamps_token_id + 1
        self.end_of_text = self.model.generation_config.eos_token_id
        past_window = self.window.timestamps_past_end(self.timestamp_begin)
        self.suppress_tokens = None  # the checkpoint's own; a list given to generate replaces them
        if past_window:
            self.suppress_tokens = sorted({*(self.model.generation_config.suppress_tokens or []), *past_window})
        self.id_to_language = {v: k.strip("<|>") for k, v in self.model.generation_config.lang_to_id.items()}
        # One generate at a time: torch already uses every core, and generate mutates state.
        self._lock = threading.Lock()
        self._torch = torch

    def _features(self, audio: np.ndarray):
        # Shorter than a window: padded to it, as in training. Longer: kept whole for long-form.
        padding = "longest" if len(audio) > self.window.samples else "max_length"
        features = self.processor.feature_extractor(
            audio, sampling_rate=SAMPLING_RATE, truncation=False, padding=padding, return_tensors="pt"
        ).input_features
        return features.to(self.device, self.model.dtype)

    def _detect_language(self, features) -> str:
        frames = self.window.frames
        token = self.model.detect_language(features[:, :, :frames], num_segment_frames=frames)
        return self.id_to_language[int(token[0])]

    def _generation_kwargs(self, seconds: float, language: str, options: DecodingOptions) -> dict:
        prompt_ids = []
        if options.initial_prompt:  # <|startofprev|> then the text, at most half the decoder's context
            start, *text = self.processor.get_prompt_ids(options.initial_prompt).tolist()
            prompt_ids = [start, *prompt_tokens(lambda _: text, options.initial_prompt, self.max_target_positions)]
        return dict(
            language=language,
            task=options.task,
            num_beams=options.beam_size,
            condition_on_prev_tokens=False,
            temperature=options.temperatures,
            compression_ratio_threshold=TOKEN_COMPRESSION_RATIO_THRESHOLD,
            logprob_threshold=LOGPROB_THRESHOLD,
            # Set so that transformers computes each window's no-speech probability (reported, and
            # judged by the engine); at 1.0 its own skip never fires (see NO_SPEECH_THRESHOLD).
            no_speech_threshold=1.0 if NO_SPEECH_THRESHOLD is None else NO_SPEECH_THRESHOLD,
            max_new_tokens=max_new_tokens(seconds, 4 + len(prompt_ids), self.max_target_positions),
            **({"suppress_tokens": self.suppress_tokens} if self.suppress_tokens else {}),
            **({"prompt_ids": self._torch.tensor(prompt_ids, device=self.device)} if prompt_ids else {}),
        )

    def decode_sequential(self, audio: np.ndarray, options: DecodingOptions) -> Iterator[Decoded]:
        # generate decodes the whole recording before it returns: one piece.
        with self._lock, self._torch.inference_mode():
            features = self._features(audio)
            language = options.forced_language or self._detect_language(features)
            decoded = self._generate(features, None, [len(audio) / SAMPLING_RATE], language, options, True)[0]
        yield decoded

    def decode_chunks(self, chunks: list[np.ndarray], options: DecodingOptions, timestamps: bool,
                      window: Window | None = None) -> list[Decoded]:
        # `window` is not used: transformers' encoder takes exactly the model's window.
        decoded, language = [], options.forced_language
        with self._lock, self._torch.inference_mode():
            for first in range(0, len(chunks), options.batch_size):
                batch = chunks[first: first + options.batch_size]
                inputs = self.processor.feature_extractor(
                    batch, sampling_rate=SAMPLING_RATE, padding="max_length", max_length=self.window.samples,
                    return_attention_mask=True, return_tensors="pt")
                features = inputs.input_features.to(self.device, self.model.dtype)
                language = language or self._detect_language(features[:1])
                seconds = [len(chunk) / SAMPLING_RATE for chunk in batch]
                decoded += self._generate(features, inputs.attention_mask.to(self.device), seconds, language, options,
                                          timestamps)
        return decoded

    def _generate(self, features, attention_mask, seconds: list[float], language: str, options: DecodingOptions,
                  timestamps: bool) -> list[Decoded]:
        """generate on a batch (one recording long-form, or chunks of at most one window), with
        transformers' own temperature fallback per item; one Decoded per item."""
        windows = math.ceil(features.shape[-1] / self.window.frames)
        steps = 0

        def stop_when_stuck(_progress):
            # Each step moves at least one predicted segment forward; far more steps than
            # windows means the seek is not moving (a model emitting only 0.00 timestamps).
            nonlocal steps
            steps += 1
            if steps > 4 * windows + 8:
                raise _Stalled()

        try:
            output = self.model.generate(
                features,
                attention_mask=attention_mask,
                return_timestamps=timestamps,
                return_segments=True,
                return_token_timestamps=options.word_timestamps,
                monitor_progress=stop_when_stuck,
                **self._generation_kwargs(min(max(seconds), self.window.seconds), language, options),
            )
        except _Stalled:  # no timestamps to trust: the engine decodes voice-activity chunks instead
            return [Decoded([], language, predicted_timestamps=False, stalled=True) for _ in seconds]
        return [self._decoded(raw_segments, duration, language, options)
                for raw_segments, duration in zip(output["segments"], seconds)]

    def _decoded(self, raw_segments: list[dict], seconds: float, language: str, options: DecodingOptions) -> Decoded:
        segments, predicted = [], False
        for raw in raw_segments:
            tokens = raw["tokens"].tolist()
            predicted = predicted or (len(tokens) > 1 and tokens[-1] >= self.timestamp_begin)
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            start = float(raw["start"])
            end = min(float(raw["end"]), seconds)
            if text and end > start:
                words = self._words(tokens, raw["token_timestamps"].tolist(), language, options) \
                    if options.word_timestamps else ()
                segments.append(Segment(round(start, 3), round(end, 3), text, words,
                                        tokens=tuple(token for token in tokens if token < self.end_of_text),
                                        **self._statistics(raw["result"])))
        return Decoded(segments, language, predicted)

    def _statistics(self, result) -> dict:
        """What generate found of the window a segment came from (stamped by _whisper_statistics_class),
        and the zlib ratio of the window's text, as openai-whisper reports it."""
        from faster_whisper.transcribe import get_compression_ratio

        if not isinstance(result, dict) or "avg_logprob" not in result:
            return {}
        if "compression_ratio" not in result:  # once per window, shared by its segments
            text = self.processor.tokenizer.decode(result["sequences"].tolist(), skip_special_tokens=True).strip()
            result["compression_ratio"] = get_compression_ratio(text)
        return {key: result.get(key) for key in ("temperature", "avg_logprob", "compression_ratio", "no_speech_prob")}

    def _words(self, tokens: list[int], times: list[float], language: str, options: DecodingOptions) -> tuple:
        """Words from transformers' per-token times (the alignment heads' DTW), split and joined
        with punctuation by faster-whisper's rules, as the CTranslate2 backend does."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import merge_punctuations

        tokenizer = Tokenizer(self.processor.tokenizer.backend_tokenizer, True, options.task, language)
        positions = [i for i, token in enumerate(tokens) if token < tokenizer.eot]
        names, word_tokens = tokenizer.split_to_word_tokens([tokens[i] for i in positions] + [tokenizer.eot])
        alignment, first = [], 0
        for name, pieces in zip(names[:-1], word_tokens[:-1]):  # the last "word" is the end of text
            after = positions[first + len(pieces)] if first + len(pieces) < len(positions) else positions[-1] + 1
            alignment.append(dict(word=name, tokens=pieces, start=times[positions[first]],
                                  end=times[min(after, len(times) - 1)], probability=None))
            first += len(pieces)
        merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        return tuple(Word(round(a["start"], 3), round(a["end"], 3), a["word"], a["probability"])
                     for a in alignment if a["word"])


@functools.cache
def _whisper_statistics_class() -> type:
    """transformers' WhisperForConditionalGeneration, each window's output stamped with what
    openai-whisper reports of it: the temperature kept, the average log-probability and the
    no-speech probability. transformers computes them for its fallback and skip rules, then drops
    them; these two overrides keep them in the window's `result` (every segment's raw["result"])."""
    from transformers import WhisperForConditionalGeneration
    from transformers.generation.logits_process import WhisperNoSpeechDetection
    from transformers.models.whisper.generation_whisper import _get_attr_from_logit_processors

    class WhisperWithStatistics(WhisperForConditionalGeneration):
        def generate_with_fallback(self, **kwargs):
            outputs = super().generate_with_fallback(**kwargs)
            # The detector scores the whole batch of this window at every temperature, in batch order.
            probabilities = _get_attr_from_logit_processors(kwargs["logits_processor"], WhisperNoSpeechDetection,
                                                            "no_speech_prob")
            for output, probability in zip(outputs[1], probabilities if probabilities is not None else ()):
                if isinstance(output, dict):
                    output["no_speech_prob"] = float(probability)
            return outputs

        def _need_fallback(self, seek_sequence, seek_outputs, index, logits_processor, generation_config,
                           vocab_size, temperature):
            verdict = super()._need_fallback(seek_sequence, seek_outputs, index, logits_processor, generation_config,
                                             vocab_size, temperature)
            output = seek_outputs[index]
            if isinstance(output, dict) and output.get("scores") is not None:
                output["temperature"] = float(temperature or 0.0)
                output["avg_logprob"] = float(self._retrieve_avg_logprobs(output["scores"], seek_sequence,
                                                                          temperature or 0.0))
            return verdict

    return WhisperWithStatistics


class _Stalled(Exception):
    """Raised inside generate's progress callback to abandon a decode that stopped moving."""


def prompt_tokens(encode, prompt: str | None, context: int) -> list[int]:
    """The initial prompt's tokens, its end kept when it is longer than a quarter of the decoder's
    context: openai-whisper keeps up to half, but CTranslate2 stops Whisper at half its context,
    prompt included, and a longer prompt left no room for the transcript."""
    if not prompt or not prompt.strip():
        return []
    return encode(" " + prompt.strip())[-(context // 4):]


def check_backend_name(name: str) -> None:
    if name != "auto" and name not in BACKENDS:
        raise WhisperGLError(f"unknown backend '{name}': choose one of auto, {', '.join(BACKENDS)}")


def load_backend(folder: Path, options: ModelOptions) -> Backend:
    """The backend named by options.backend (or, for `auto`, the first registered one that suits
    the folder); when it cannot load the model, the next one that suits, with a warning."""
    check_backend_name(options.backend)
    suitable = [backend for backend in BACKENDS.values() if backend.suits(folder, options)]
    if options.backend == "auto":
        candidates = suitable
    else:
        candidates = [BACKENDS[options.backend]] + [b for b in suitable if b.name != options.backend]
    if not candidates:
        raise WhisperGLError(f"'{folder}' holds no model that a backend can load ({', '.join(BACKENDS)})")
    for backend, fallback in zip(candidates, [*candidates[1:], None]):
        try:
            return backend(folder, options)
        except WhisperGLError as error:
            if fallback is None:
                raise
            logger.warning("%s; using the %s backend instead", error, fallback.name)
    raise AssertionError("unreachable")
