"""`python -m whisper_gl` is the `whisper-gl` command."""

from .cli import main

main()
