"""One configuration dataclass per stage.

Entry points parse them with transformers' HfArgumentParser, so every field's `help`
is what `--help` prints. Defaults follow the seed project (Galician, transcribe,
30-second windows); nothing below hard-codes the language beyond its default.
"""

from dataclasses import dataclass, field
from typing import Optional

from . import DEFAULT_LANGUAGE, DEFAULT_TASK, OFFLINE_BASE_DIR
