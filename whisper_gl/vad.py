"""Voice activity: where the speech is in a recording, and whether there is any.

faster-whisper's Silero detector (ONNX, CPU) does the listening; this module holds the
engine's choices on top of it: pauses that end a span, what counts as a voice, and what is
too short or too quiet to transcribe at all. The batch engine cuts recordings into chunks at
these spans, the live engine keeps silence out of its buffer with them, and both give no text
where there is nothing to hear (Whisper would invent words there: "Mónido de Vígrima." on a
20 s tone).
"""

from __future__ import annotations

import numpy as np

from .runtime import no_onnxruntime_telemetry
from .window import SAMPLING_RATE

# Pauses that end a voice-activity span: sentence breaks, not breaths.
MIN_SILENCE_MS = 500
# Shorter than this, or with a peak below SILENCE_PEAK (-60 dBFS), there is nothing to transcribe.
MIN_SPEECH_SECONDS = 0.2
SILENCE_PEAK = 1e-3
MIN_VOICE_SECONDS = 0.25  # speech the detector must hear before a recording counts as spoken
LISTEN_SECONDS = 30.0  # has_speech: the detector's window


def speech_spans(waveform: np.ndarray, max_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech in `waveform`, split at pauses, each at most
    `max_seconds` long."""
    no_onnxruntime_telemetry()
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=max_seconds, min_silence_duration_ms=MIN_SILENCE_MS)
    return [(span["start"], span["end"]) for span in get_speech_timestamps(waveform, options)]


def has_speech(waveform: np.ndarray) -> bool:
    """Whether the detector hears a voice anywhere in `waveform` (white noise, a tone or music
    without voice: no). It listens one window at a time and stops at the first speech, so a
    recording that talks costs one window of VAD (~0.1 s on a 2-core CPU)."""
    step = int(LISTEN_SECONDS * SAMPLING_RATE)
    for start in range(0, len(waveform), step):
        spans = speech_spans(waveform[start:start + step], LISTEN_SECONDS)
        # A blip shorter than a syllable is the detector's noise, not a voice.
        if sum(end - begin for begin, end in spans) >= MIN_VOICE_SECONDS * SAMPLING_RATE:
            return True
    return False


def speech_share(waveform: np.ndarray) -> float:
    """The share of `waveform` the detector hears as voice: its 32 ms frames at or above its
    threshold (0.5), with no padding around them (spans are padded by 0.4 s each side). Noise that
    fools the detector for a moment scores a few per cent; speech, even under noise at 10 dB SNR,
    well over half (the sample corpus's clips)."""
    no_onnxruntime_telemetry()
    from faster_whisper.vad import VadOptions, get_vad_model

    frame = 512  # Silero's window at 16 kHz
    if not len(waveform):
        return 0.0
    probabilities = get_vad_model()(np.pad(waveform, (0, -len(waveform) % frame)))
    return float(np.mean(np.asarray(probabilities).reshape(-1) >= VadOptions.threshold))


def is_inaudible(waveform: np.ndarray) -> bool:
    """Too short to hold a word, not a signal (NaN, infinities), or quieter than SILENCE_PEAK."""
    return (len(waveform) < MIN_SPEECH_SECONDS * SAMPLING_RATE or not np.isfinite(waveform).all()
            or float(np.abs(waveform).max()) < SILENCE_PEAK)
