"""The two decoders behind the transcription engine: transformers and CTranslate2.

Both follow Whisper's long-form algorithm (sequential windows that move with the predicted
timestamps) with the loop guards of the original paper: no conditioning on the previous
window, and a window whose output compresses too well (repetition) or scores too low is
decoded again at a higher temperature. Both also offer "window" decoding: fixed windows
decoded without timestamps, each given the window's times, for checkpoints that no longer
predict timestamps.

A backend returns `Decoded`; the engine (`whisper_gl.transcribe`) adds the guards that
do not depend on the decoder.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import WhisperGLError
from .subtitles import Segment

SAMPLING_RATE = 16000
# Temperature fallback, thresholds and the no-speech skip of Whisper's reference decoder.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
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

# OpenAI's Whisper window; its 1501 timestamp tokens are <|0.00|> to <|30.00|> in 0.02 s steps.
# A model with a shorter window must not close a segment past its window's end: the next
# window would then overlap it (a 10 s model wrote segments up to 19.4 s in its first window).
PRETRAINED_WINDOW_SECONDS = 30
TIME_PRECISION = 0.02
TIMESTAMP_TOKENS = round(PRETRAINED_WINDOW_SECONDS / TIME_PRECISION) + 1

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


def timestamps_past_window(timestamp_begin: int, window_seconds: float) -> list[int]:
    """Ids of the timestamp tokens later than the window's end: none for a 30 s model."""
    last = timestamp_begin + round(window_seconds / TIME_PRECISION)
    return list(range(last + 1, timestamp_begin + TIMESTAMP_TOKENS))


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


class TransformersBackend:
    """WhisperForConditionalGeneration.generate, long-form (the reference implementation)."""

    name = "transformers"

    def __init__(self, folder: Path, *, device: str = "cpu", beam_size: int = 5,
                 temperatures: tuple[float, ...] = TEMPERATURES):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        try:
            self.processor = WhisperProcessor.from_pretrained(folder)
            self.model = WhisperForConditionalGeneration.from_pretrained(folder).to(device).eval()
        except (OSError, ValueError) as error:
            raise WhisperGLError(f"cannot load the transformers model in '{folder}': {error}") from None
        logging.getLogger("transformers.generation.utils").addFilter(_GENERATE_NOISE)
        self.device = device
        self.beam_size = beam_size
        self.temperatures = tuple(temperatures)
        config = self.model.config
        # The window comes from the checkpoint (never a hard-coded 30 s): the encoder's
        # convolutions map stride * max_source_positions mel frames onto its positions.
        conv_stride = self.model.model.encoder.conv1.stride[0] * self.model.model.encoder.conv2.stride[0]
        self.window_frames = config.max_source_positions * conv_stride
        hop = self.processor.feature_extractor.hop_length
        self.window_seconds = self.window_frames * hop / SAMPLING_RATE
        self.window_samples = self.window_frames * hop
        self.max_target_positions = config.max_target_positions
        self.timestamp_begin = self.model.generation_config.no_timestamps_token_id + 1
        past_window = timestamps_past_window(self.timestamp_begin, self.window_seconds)
        self.suppress_tokens = None  # the checkpoint's own; a list given to generate replaces them
        if past_window:
            self.suppress_tokens = sorted({*(self.model.generation_config.suppress_tokens or []), *past_window})
        self.id_to_language = {v: k.strip("<|>") for k, v in self.model.generation_config.lang_to_id.items()}
        # One generate at a time: torch already uses every core, and generate mutates state.
        self._lock = threading.Lock()
        self._torch = torch

    def _features(self, audio: np.ndarray):
        # Shorter than a window: padded to it, as in training. Longer: kept whole for long-form.
        padding = "longest" if len(audio) > self.window_samples else "max_length"
        features = self.processor.feature_extractor(
            audio, sampling_rate=SAMPLING_RATE, truncation=False, padding=padding, return_tensors="pt"
        ).input_features
        return features.to(self.device, self.model.dtype)

    def _detect_language(self, features) -> str:
        token = self.model.detect_language(features[:, :, : self.window_frames], num_segment_frames=self.window_frames)
        return self.id_to_language[int(token[0])]

    def _generation_kwargs(self, seconds: float, language: str, task: str) -> dict:
        return dict(
            language=language,
            task=task,
            num_beams=self.beam_size,
            condition_on_prev_tokens=False,
            temperature=self.temperatures,
            compression_ratio_threshold=TOKEN_COMPRESSION_RATIO_THRESHOLD,
            logprob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            max_new_tokens=max_new_tokens(seconds, 4, self.max_target_positions),
            **({"suppress_tokens": self.suppress_tokens} if self.suppress_tokens else {}),
        )

    def decode(self, audio: np.ndarray, *, language: str | None, task: str) -> Decoded:
        """Long-form decoding with timestamps over the whole recording."""
        with self._lock, self._torch.inference_mode():
            features = self._features(audio)
            language = language or self._detect_language(features)
            return self._decode_long_form(features, len(audio) / SAMPLING_RATE, language, task)

    def _decode_long_form(self, features, seconds: float, language: str, task: str) -> Decoded:
        total_frames = features.shape[-1]
        windows = math.ceil(total_frames / self.window_frames)
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
                **self._generation_kwargs(min(seconds, self.window_seconds), language, task),
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

    def decode_chunks(self, chunks: list[np.ndarray], *, language: str | None, task: str,
                      batch_size: int = 8) -> tuple[list[str], str]:
        """The text of each chunk (at most one window long), decoded without timestamps, in batches."""
        texts = []
        with self._lock, self._torch.inference_mode():
            for first in range(0, len(chunks), batch_size):
                batch = chunks[first : first + batch_size]
                features = self.processor.feature_extractor(
                    batch, sampling_rate=SAMPLING_RATE, padding="max_length", return_tensors="pt"
                ).input_features.to(self.device, self.model.dtype)
                language = language or self._detect_language(features[:1])
                longest = max(len(chunk) for chunk in batch) / SAMPLING_RATE
                ids = self.model.generate(
                    features, return_timestamps=False, **self._generation_kwargs(longest, language, task)
                )
                ids = ids["sequences"] if isinstance(ids, dict) else ids
                texts += [text.strip() for text in self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return texts, language or ""


class _Stalled(Exception):
    """Raised inside generate's progress callback to abandon a decode that stopped moving."""


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


class CTranslate2Backend:
    """faster-whisper on a CTranslate2 export (int8 on CPU): the fast path."""

    name = "ctranslate2"

    def __init__(self, folder: Path, *, device: str = "cpu", beam_size: int = 5,
                 compute_type: str = "default", num_workers: int = 1, vad_filter: bool = False,
                 temperatures: tuple[float, ...] = TEMPERATURES):
        export = ctranslate2_export(folder)
        if export is None:
            raise WhisperGLError(
                f"'{folder}' has no CTranslate2 export: run `python -m whisper_gl.export --model {folder}`"
            )
        if compute_type == "default":
            compute_type = "int8" if device == "cpu" else "float16"
        try:
            # num_workers > 1 lets that many transcribe() calls from different threads run at once.
            self.model = _whisper_model_class()(str(export), device=device, compute_type=compute_type,
                                                num_workers=num_workers)
        except (RuntimeError, ValueError, OSError) as error:
            raise WhisperGLError(f"cannot load the CTranslate2 export in '{export}': {error}") from None
        self.beam_size = beam_size
        self.temperatures = list(temperatures)
        self.vad_filter = vad_filter
        # The window comes from the export's preprocessor_config.json (chunk_length).
        self.window_seconds = float(self.model.feature_extractor.chunk_length)
        # Timestamp tokens are not in tokenizer.json: they follow <|notimestamps|> (as in faster-whisper).
        self.timestamp_begin = self.model.hf_tokenizer.token_to_id("<|notimestamps|>") + 1
        # -1: faster-whisper's default set (non-speech symbols).
        self.suppress_tokens = [-1, *timestamps_past_window(self.timestamp_begin, self.window_seconds)]

    def check(self) -> None:
        """Decode one token of a second of silence: proves the export runs end to end."""
        pieces, _ = self.model.transcribe(np.zeros(SAMPLING_RATE, dtype=np.float32), beam_size=1,
                                          temperature=0.0, max_new_tokens=1, without_timestamps=True)
        list(pieces)

    def _transcribe(self, audio: np.ndarray, language: str | None, task: str, timestamps: bool):
        seconds = min(len(audio) / SAMPLING_RATE, self.window_seconds)
        return self.model.transcribe(
            audio,
            language=language,
            task=task,
            beam_size=self.beam_size,
            temperature=self.temperatures,
            compression_ratio_threshold=TEXT_COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            condition_on_previous_text=False,
            without_timestamps=not timestamps,
            vad_filter=self.vad_filter and timestamps,
            max_new_tokens=max_new_tokens(seconds, 4, self.model.max_length),
            suppress_tokens=self.suppress_tokens,
        )

    def decode(self, audio: np.ndarray, *, language: str | None, task: str) -> Decoded:
        """Long-form decoding with timestamps over the whole recording."""
        pieces, info = self._transcribe(audio, language, task, timestamps=True)
        segments, predicted = [], False
        for piece in pieces:  # a generator: decoding happens while iterating
            predicted = predicted or (len(piece.tokens) > 1 and piece.tokens[-1] >= self.timestamp_begin)
            text = piece.text.strip()
            if text:
                segments.append(Segment(round(piece.start, 3), round(min(piece.end, info.duration), 3), text))
        return Decoded(segments, info.language, predicted)

    def decode_chunks(self, chunks: list[np.ndarray], *, language: str | None, task: str) -> tuple[list[str], str]:
        """The text of each chunk (at most one window long), decoded without timestamps."""
        texts = []
        for chunk in chunks:
            pieces, info = self._transcribe(chunk, language, task, timestamps=False)
            texts.append(" ".join(piece.text.strip() for piece in pieces))
            language = language or info.language  # detected on the first chunk, then kept
        return texts, language or ""
