"""Process settings that must be in place before the numeric libraries load."""

from __future__ import annotations

import os
import sys


def passive_openmp_waits() -> bool:
    """Make idle OpenMP threads sleep instead of spinning; True when it can still take effect.

    Spinning waits made transformers decoding ~20x slower on a small shared CPU (2 cores,
    Spaces' CPU basic): 20 s of audio took 91 s instead of 3.8 s. OpenMP reads the variable
    when its runtime loads, so the `whisper-gl` verbs call this first thing, and the engine
    calls it before it imports torch or CTranslate2. A value the user set is kept.
    """
    if any(name in sys.modules for name in ("torch", "ctranslate2")):
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def no_session_files() -> None:
    """Stop onnxruntime (faster-whisper's Silero VAD runs on it) from leaving a `.ses` telemetry
    file in $TMPDIR when it loads: a server must leave no file behind. A value the user set is kept."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
