"""Fine-tune Whisper on stored features; keep the best-WER checkpoint (see README, section training).

    python train.py --preset smoke --features artifacts/features --model artifacts/whisper-base
    python train.py --evaluate-only --model artifacts/model --features artifacts/features
"""

from whisper_gl.cli import parse_config, run
from whisper_gl.config import TrainConfig


def main() -> None:
    config = parse_config(TrainConfig, __doc__.splitlines()[0])
    from whisper_gl import training

    (training.evaluate_only if config.evaluate_only else training.train)(config)


if __name__ == "__main__":
    run(main)
