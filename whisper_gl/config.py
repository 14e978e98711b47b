"""One configuration dataclass per stage.

Entry points parse them with transformers' HfArgumentParser, so every field's `help`
is what `--help` prints. Defaults follow the seed project (Galician, transcribe,
30-second windows); nothing below hard-codes the language beyond its default.
"""

from dataclasses import dataclass, field
from typing import Optional

from . import DEFAULT_LANGUAGE, DEFAULT_TASK, OFFLINE_BASE_DIR


@dataclass
class SampleCorpusConfig:
    """`python -m whisper_gl.sample_corpus`: speak the bundled sentences into Common Voice's layout."""

    output_dir: str = field(
        default="Resources/cv-corpus-sample/gl",
        metadata={"help": "Folder of the corpus in Common Voice release layout (clips/*.mp3, train/dev/test/validated.tsv)."},
    )
    sentences: str = field(
        default="Resources/sentences.tsv",
        metadata={"help": "TSV with columns `split` (train/dev/test) and `sentence`: the text to speak."},
    )
    examples_dir: str = field(
        default="Resources/examples",
        metadata={"help": "Where to write the apps' examples: short.mp3 (one sentence), long.mp3 + long.txt (long-form speech)."},
    )
    long_example_seconds: float = field(
        default=120.0,
        metadata={"help": "Target length of long.mp3 in seconds (dev/test sentences first, then train ones)."},
    )
    workers: int = field(
        default=4,
        metadata={"help": "Clips synthesised in parallel (each runs espeak-ng then ffmpeg)."},
    )
    force: bool = field(
        default=False,
        metadata={"help": "Rebuild even when the corpus and examples already exist and are complete."},
    )
