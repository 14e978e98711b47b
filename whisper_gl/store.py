"""Locations: where stages hand artifacts to each other.

A location is a local folder (the default, so everything runs offline) or a Hugging Face
Hub repo id. Local writes are atomic: an artifact is built in a hidden sibling folder and
renamed into place, so a killed run never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

from . import WhisperGLError, error_line
from .paths import BASE_MODEL, FINE_TUNED_MODEL

# "openai/whisper-small", "user/name"; the legacy un-namespaced ids are not used by Whisper.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Weight formats we never need from the Hub (TensorFlow, Flax, ONNX).
_IGNORED_HUB_FILES = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "flax_*", "tf_*"]

OFFLINE_HINT = f"offline, use the built-in OpenAI Whisper base: --model {BASE_MODEL}"


def is_hub_id(location: str) -> bool:
    """True when `location` is not an existing local path but looks like a Hub repo id."""
    return not Path(location).exists() and bool(HUB_ID.match(location))


# A folder holding one of these at its top was written by a stage (a model, an export, features,
# an evaluation, a corpus): a new run may replace it. Any other non-empty folder is the user's.
ARTIFACT_FILES = ("config.json", "model.bin", "features_config.json", "metrics.json", "validated.tsv")


def is_replaceable(folder: Path) -> bool:
    """Whether a stage may replace `folder`: absent, empty, or an artifact of ours."""
    return (not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))
            or any((folder / name).is_file() for name in ARTIFACT_FILES))


def check_replaceable(target: str | os.PathLike, flag: str = "--output-dir",
                      replaceable: Callable[[Path], bool] = is_replaceable) -> None:
    """Refuse, before any work, an output folder that holds something other than a previous
    output: `--output-dir ~/notes` must never wipe the notes."""
    if not replaceable(Path(target)):
        raise WhisperGLError(f"{flag} {target} exists and is not an output of whisper-gl: give a new or empty "
                             "folder (a previous output there is replaced)")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, replaceable: Callable[[Path], bool] = is_replaceable) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `target` only if the block succeeds.
    A non-empty `target` that is not `replaceable` (by default: not one of our artifacts) is refused."""
    target = Path(target)
    check_replaceable(target, replaceable=replaceable)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a whole file or nothing: a temporary file in the same folder, then a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def hub_call(action: str, hint: str = "") -> Iterator[None]:
    """Any failure of the Hub (network, HTTP, auth) inside the block becomes one clear line:
    "<action> failed (<first line of the error>)<hint>". The token is never part of it."""
    try:
        yield
    except WhisperGLError:
        raise
    except Exception as error:  # noqa: BLE001 - network, HTTP and auth failures alike
        raise WhisperGLError(f"{action} failed ({error_line(error)}){_status_hint(error)}{hint}") from None


def _status_hint(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 402:
        return "; since July 2026 hosting a Gradio Space needs a PRO (or Team/Enterprise) plan"
    if status in (401, 403):
        return "; check that the token has write access (`hf auth login`)"
    return ""


def resolve_model(location: str) -> Path:
    """Return a local folder holding the model at `location` (a folder or a Hub id; the
    built-in names are whisper_gl.models').

    Hub ids are downloaded once into the Hugging Face cache (honouring HF_HUB_OFFLINE);
    when the Hub cannot be reached this raises one clear error naming the offline model.
    """
    path = Path(location).expanduser()
    if path.is_dir():
        if not any((path / name).exists() for name in ("config.json", "model.bin")):
            raise WhisperGLError(f"{path.absolute()} is a folder but holds no model (no config.json)")
        return path
    if not HUB_ID.match(location):
        raise WhisperGLError(f"model '{location}' not found: no folder {path.absolute()}, and not a Hub id "
                             f"(NAMESPACE/NAME) or a built-in name ({BASE_MODEL}, {FINE_TUNED_MODEL}); {OFFLINE_HINT}")
    # Fail fast instead of a long retry storm when the Hub is unreachable.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    from huggingface_hub import snapshot_download

    with hub_call(f"'{location}' is not a local folder, and fetching it from the Hugging Face Hub",
                  hint=f"; {OFFLINE_HINT}"):
        return Path(snapshot_download(location, ignore_patterns=_IGNORED_HUB_FILES))


def hub_token() -> str:
    """The Hugging Face token for pushing, or a clear error (never printed, never written)."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise WhisperGLError(
            "--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN"
        )
    return token


def push_folder(folder: str | os.PathLike, repo_id: str, *, repo_type: str = "model",
                commit_message: str = "Upload from whisper-gl") -> str:
    """Upload a local folder to a Hub repo (created when missing); return the repo URL."""
    from huggingface_hub import HfApi

    if not HUB_ID.match(repo_id):
        raise WhisperGLError(f"'{repo_id}' is not a Hub repo id of the form NAMESPACE/NAME")
    api = HfApi(token=hub_token())
    with hub_call(f"{folder} is saved, but pushing it to {repo_id}"):
        url = api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                          commit_message=commit_message)
    return str(url)
