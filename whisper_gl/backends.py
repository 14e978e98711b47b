"""The decoders behind the transcription engine, registered by name: transformers and CTranslate2.

Both follow Whisper's long-form algorithm (sequential windows that move with the predicted
timestamps) with the loop guards of the original paper: no conditioning on the previous
window, and a window whose output compresses too well (repetition) or scores too low is
decoded again at a higher temperature. Both also decode a list of short chunks (at most one
window each) without timestamps: the engine's voice-activity path.

A backend is a class with the `Backend` shape, registered with `@register_backend`; the
engine (whisper_gl.transcribe) picks one by name, or the first registered one that suits a
model folder (`auto`), and hands it one `DecodingOptions` per call. It returns `Decoded`;
the engine adds the guards that do not depend on the decoder.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from . import WhisperGLError
from .config import DecodingOptions, ModelOptions
from .subtitles import Segment
from .window import SAMPLING_RATE, Window

logger = logging.getLogger(__name__)

# Thresholds of the temperature fallback and the no-speech skip of Whisper's reference decoder
# (the temperatures themselves are a DecodingOptions field).
TEXT_COMPRESSION_RATIO_THRESHOLD = 2.4  # zlib ratio of the decoded text (openai-whisper, faster-whisper)
# transformers measures the ratio on token ids, not text; its documented equivalent of 2.4 is 1.35.
TOKEN_COMPRESSION_RATIO_THRESHOLD = 1.35
LOGPROB_THRESHOLD = -1.0
# No "no speech" skip: on out-of-domain speech a window that loops at every temperature also
# scores low, and the skip (no_speech_prob > 0.6 and logprob < -1) then drops 30 s of real
# speech without a word (seen on the sample corpus with the base model). The engine handles
# silence instead (empty input, VAD option) and cuts or drops the looping segments.
NO_SPEECH_THRESHOLD = None
# Fast Galician speech is ~3.5 words/s, ~2.5 tokens a word, plus timestamp pairs: 12 tokens
# per second of audio is a generous ceiling that still stops a runaway loop early.
MAX_TOKENS_PER_SECOND = 12
MIN_NEW_TOKENS = 8

CTRANSLATE2_SUBDIR = "ctranslate2"


@dataclass
class Decoded:
    """What a backend found: timed segments, the language, whether the model itself closed
    any segment with a timestamp (False: it does not predict them), and whether the decode
    was abandoned because its timestamps stopped moving forward."""

    segments: list[Segment]
    language: str
    predicted_timestamps: bool
    stalled: bool = False


def max_new_tokens(seconds: float, prompt_tokens: int, max_target_positions: int) -> int:
    """Tokens a window of `seconds` may produce: bounded by the audio, not by the model."""
    bound = math.ceil(seconds * MAX_TOKENS_PER_SECOND) + MIN_NEW_TOKENS
    return max(1, min(bound, max_target_positions // 2 - prompt_tokens))


class Backend(Protocol):
    """What the engine needs from a decoder."""

    name: ClassVar[str]
    window: Window  # the model's window (30 s for a pretrained Whisper)

    def __init__(self, folder: Path, options: ModelOptions) -> None: ...

    @classmethod
    def suits(cls, folder: Path, options: ModelOptions) -> bool:
        """Whether `auto` should pick this backend for the model in `folder`."""

    def decode(self, audio: np.ndarray, options: DecodingOptions) -> Decoded:
        """Long-form decoding with timestamps over the whole recording."""

    def decode_chunks(self, chunks: list[np.ndarray], options: DecodingOptions) -> tuple[list[str], str]:
        """The text of each chunk (at most one window long) without timestamps, and the language."""


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
                                                num_workers=options.num_workers)
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

    def _transcribe(self, audio: np.ndarray, options: DecodingOptions, timestamps: bool):
        seconds = min(len(audio) / SAMPLING_RATE, self.window.seconds)
        return self.model.transcribe(
            audio,
            language=options.forced_language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=list(options.temperatures),
            compression_ratio_threshold=TEXT_COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            condition_on_previous_text=False,
            without_timestamps=not timestamps,
            vad_filter=options.vad_filter and timestamps,
            max_new_tokens=max_new_tokens(seconds, 4, self.model.max_length),
            suppress_tokens=self.suppress_tokens,
            initial_prompt=options.initial_prompt,
        )

    def decode(self, audio: np.ndarray, options: DecodingOptions) -> Decoded:
        pieces, info = self._transcribe(audio, options, timestamps=True)
        segments, predicted = [], False
        for piece in pieces:  # a generator: decoding happens while iterating
            predicted = predicted or (len(piece.tokens) > 1 and piece.tokens[-1] >= self.timestamp_begin)
            text = piece.text.strip()
            end = min(piece.end, info.duration)
            if text and end > piece.start:  # a timestamp past the end of the audio closes nothing
                segments.append(Segment(round(piece.start, 3), round(end, 3), text))
        return Decoded(segments, info.language, predicted)

    def decode_chunks(self, chunks: list[np.ndarray], options: DecodingOptions) -> tuple[list[str], str]:
        texts = []
        for chunk in chunks:
            pieces, info = self._transcribe(chunk, options, timestamps=False)
            texts.append(" ".join(piece.text.strip() for piece in pieces))
            if options.forced_language is None:  # detected on the first chunk, then kept
                options = dataclasses.replace(options, language=info.language)
        return texts, options.forced_language or ""


@register_backend
class TransformersBackend:
    """WhisperForConditionalGeneration.generate, long-form (the reference implementation)."""

    name = "transformers"

    @classmethod
    def suits(cls, folder: Path, options: ModelOptions) -> bool:
        return has_transformers_checkpoint(folder)

    def __init__(self, folder: Path, options: ModelOptions):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if not has_transformers_checkpoint(folder):
            raise WhisperGLError(f"'{folder}' holds only a CTranslate2 model: use --backend ctranslate2")
        try:
            self.processor = WhisperProcessor.from_pretrained(folder)
            self.model = WhisperForConditionalGeneration.from_pretrained(folder).to(options.device).eval()
        except (OSError, ValueError) as error:
            raise WhisperGLError(f"cannot load the transformers model in '{folder}': {error}") from None
        logging.getLogger("transformers.generation.utils").addFilter(_GENERATE_NOISE)
        self.device = options.device
        # The window comes from the checkpoint (never a hard-coded 30 s).
        self.window = Window.of(self.model.config)
        self.max_target_positions = self.model.config.max_target_positions
        self.timestamp_begin = self.model.generation_config.no_timestamps_token_id + 1
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
        prompt_ids = (self.processor.get_prompt_ids(options.initial_prompt).tolist()
                      if options.initial_prompt else [])
        return dict(
            language=language,
            task=options.task,
            num_beams=options.beam_size,
            condition_on_prev_tokens=False,
            temperature=options.temperatures,
            compression_ratio_threshold=TOKEN_COMPRESSION_RATIO_THRESHOLD,
            logprob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            max_new_tokens=max_new_tokens(seconds, 4 + len(prompt_ids), self.max_target_positions),
            **({"suppress_tokens": self.suppress_tokens} if self.suppress_tokens else {}),
            **({"prompt_ids": self._torch.tensor(prompt_ids, device=self.device)} if prompt_ids else {}),
        )

    def decode(self, audio: np.ndarray, options: DecodingOptions) -> Decoded:
        with self._lock, self._torch.inference_mode():
            features = self._features(audio)
            language = options.forced_language or self._detect_language(features)
            return self._decode_long_form(features, len(audio) / SAMPLING_RATE, language, options)

    def _decode_long_form(self, features, seconds: float, language: str, options: DecodingOptions) -> Decoded:
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
                return_timestamps=True,
                return_segments=True,
                monitor_progress=stop_when_stuck,
                **self._generation_kwargs(min(seconds, self.window.seconds), language, options),
            )
        except _Stalled:  # no timestamps to trust: the engine decodes voice-activity chunks instead
            return Decoded([], language, predicted_timestamps=False, stalled=True)
        segments, predicted = [], False
        for raw in output["segments"][0]:
            tokens = raw["tokens"].tolist()
            predicted = predicted or (len(tokens) > 1 and tokens[-1] >= self.timestamp_begin)
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            start = float(raw["start"])
            end = min(float(raw["end"]), seconds)
            if text and end > start:
                segments.append(Segment(round(start, 3), round(end, 3), text))
        return Decoded(segments, language, predicted)

    def decode_chunks(self, chunks: list[np.ndarray], options: DecodingOptions,
                      batch_size: int = 8) -> tuple[list[str], str]:
        texts, language = [], options.forced_language
        with self._lock, self._torch.inference_mode():
            for first in range(0, len(chunks), batch_size):
                batch = chunks[first : first + batch_size]
                features = self.processor.feature_extractor(
                    batch, sampling_rate=SAMPLING_RATE, padding="max_length", return_tensors="pt"
                ).input_features.to(self.device, self.model.dtype)
                language = language or self._detect_language(features[:1])
                longest = max(len(chunk) for chunk in batch) / SAMPLING_RATE
                ids = self.model.generate(
                    features, return_timestamps=False, **self._generation_kwargs(longest, language, options)
                )
                ids = ids["sequences"] if isinstance(ids, dict) else ids
                texts += [text.strip() for text in self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return texts, language or ""


class _Stalled(Exception):
    """Raised inside generate's progress callback to abandon a decode that stopped moving."""


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
