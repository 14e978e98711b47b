"""Fine-tune Whisper on stored features; keep the best-WER checkpoint (README, section training).
The same as `whisper-gl train`:

    python train.py --preset smoke --features artifacts/features --model artifacts/whisper-base
    python train.py --evaluate-only --model artifacts/model --features artifacts/features
"""

from whisper_gl.cli import door

if __name__ == "__main__":
    door("train")
