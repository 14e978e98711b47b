"""Fine-tune OpenAI Whisper for Galician and serve it.

The package follows the data: sources -> features -> training -> model store ->
transcription -> apps. The `whisper-gl` command (whisper_gl.cli) has a verb per stage;
the top-level scripts of the repository are thin doors into the same entry points.
"""

DEFAULT_LANGUAGE = "gl"
DEFAULT_TASK = "transcribe"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("whisper-gl")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "0+unknown"


__version__ = _version()


# What a server (app or API) tells a stranger when the fault is ours; the details go to its log.
GENERIC_FAILURE = "could not transcribe this audio"


class WhisperGLError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable Hub).

    Entry points print its message as one line and exit non-zero; apps show it in the UI.
    """


def error_line(error: BaseException | str, limit: int = 200) -> str:
    """An exception (or a tool's stderr) as one short line for a message: its first non-empty
    line, or the exception's type when it has no text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines:
        return lines[0][:limit]
    return "" if isinstance(error, str) else type(error).__name__
