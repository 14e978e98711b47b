"""What every entry point shares: dataclass arguments and one-line errors."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from . import WhisperGLError

Config = TypeVar("Config")


def parse_config(config_class: type[Config], description: str, argv: list[str] | None = None) -> Config:
    """Parse command-line flags into a config dataclass; `--help` lists every field's help."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_class, description=description)
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


def run(main: Callable[[], object]) -> None:
    """Run an entry point: user errors become one line on stderr and exit code 2."""
    try:
        main()
    except WhisperGLError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
