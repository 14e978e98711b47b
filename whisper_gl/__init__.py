"""Fine-tune OpenAI Whisper for Galician and serve it.

The package follows the data: sources -> features -> training -> model store ->
transcription -> apps. The top-level scripts of the repository are thin doors into it.
"""

import os

# Idle OpenMP threads spin by default; on a small shared CPU (2 cores, Spaces' CPU basic)
# that made transformers decoding ~20x slower. Set before torch is imported anywhere.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_LANGUAGE = "gl"
DEFAULT_TASK = "transcribe"
ARTIFACTS_DIR = "artifacts"
OFFLINE_BASE_DIR = "artifacts/whisper-base"


class WhisperGLError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable Hub).

    Entry points print its message as one line and exit non-zero; apps show it in the UI.
    """
