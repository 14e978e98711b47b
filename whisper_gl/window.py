"""Whisper's audio geometry: one home for the sampling rate, the mel frames and the window.

Whisper hears 16 kHz audio as log-mel frames every 160 samples (100 a second, 400-sample
FFT); its encoder halves the frames once (conv2 has stride 2), and its decoder names times
with one timestamp token per encoder position (0.02 s). Pretrained models take 30 s
windows (3000 frames, 1500 positions, timestamp tokens <|0.00|> .. <|30.00|>); a model cut
to a shorter window (the seed's 10 s experiment) keeps that geometry and fewer positions.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLING_RATE = 16_000
HOP_LENGTH = 160  # samples per mel frame
N_FFT = 400
FRAMES_PER_SECOND = SAMPLING_RATE // HOP_LENGTH  # 100
ENCODER_STRIDE = 2  # mel frames per encoder position (and per timestamp token)
TIME_PRECISION = ENCODER_STRIDE / FRAMES_PER_SECOND  # 0.02 s between timestamp tokens
PRETRAINED_WINDOW_SECONDS = 30
MAX_WINDOW_SECONDS = PRETRAINED_WINDOW_SECONDS  # no Whisper has encoder positions past 30 s
# <|0.00|> .. <|30.00|>: every Whisper vocabulary has them, whatever the model's window.
TIMESTAMP_TOKENS = round(PRETRAINED_WINDOW_SECONDS / TIME_PRECISION) + 1


@dataclass(frozen=True)
class Window:
    """The audio a model sees at once, in mel frames (3000 for a pretrained Whisper)."""

    frames: int

    @classmethod
    def of_seconds(cls, seconds: float) -> "Window":
        return cls(round(seconds * FRAMES_PER_SECOND))

    @classmethod
    def of(cls, model_config) -> "Window":
        """The window of a WhisperConfig: its encoder positions times the encoder's stride."""
        return cls(model_config.max_source_positions * ENCODER_STRIDE)

    @property
    def seconds(self) -> float:
        return self.frames / FRAMES_PER_SECOND

    @property
    def samples(self) -> int:
        return self.frames * HOP_LENGTH

    @property
    def positions(self) -> int:
        """Encoder positions (max_source_positions)."""
        return self.frames // ENCODER_STRIDE

    @property
    def is_pretrained(self) -> bool:
        return self.seconds >= PRETRAINED_WINDOW_SECONDS

    def timestamp_index(self, seconds: float) -> int:
        """The timestamp token (counted from <|0.00|>) nearest to `seconds`, capped at the window's end."""
        return min(round(seconds / TIME_PRECISION), self.positions)

    def timestamps_past_end(self, timestamp_begin: int) -> list[int]:
        """Ids of the timestamp tokens later than the window's end (none for a 30 s model):
        a short-window model must not close a segment past its window, or the next window
        would overlap it (a 10 s model wrote segments up to 19.4 s in its first window)."""
        return list(range(timestamp_begin + self.positions + 1, timestamp_begin + TIMESTAMP_TOKENS))

    def describe(self) -> str:
        return f"{self.seconds:g} s"


PRETRAINED_WINDOW = Window.of_seconds(PRETRAINED_WINDOW_SECONDS)
