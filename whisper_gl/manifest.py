"""features_config.json: what the feature stage promises the stages after it.

The feature stage writes it beside the features; training, evaluation and the reports read
it. One typed record, so a key is never spelled twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import WhisperGLError
from .window import HOP_LENGTH, SAMPLING_RATE, Window

STORAGE = "float16 [n_mels, real frames + 1]; whisper_gl.features.pad_features restores the window"


@dataclass(frozen=True)
class FeaturesManifest:
    """How stored features were made: by which processor, for which language, task and window."""

    FILE = "features_config.json"

    model: str  # the checkpoint whose processor made them
    language: str
    task: str
    n_mels: int
    window_frames: int
    dataset: str = ""  # the source they were extracted from
    # Output split -> where it came from in the source, e.g. {"validation": "10 % of train (seed 42)"}.
    splits: dict[str, str] = dataclasses.field(default_factory=dict)
    sampling_rate: int = SAMPLING_RATE
    hop_length: int = HOP_LENGTH
    storage: str = STORAGE

    @property
    def window(self) -> Window:
        return Window(self.window_frames)

    @property
    def chunk_length(self) -> int:
        """The window in seconds (the processor's name for it)."""
        return round(self.window.seconds)

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / self.FILE
        values = {**dataclasses.asdict(self), "chunk_length": self.chunk_length}  # for people reading the file
        path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> "FeaturesManifest":
        """Read a manifest file; a missing or incomplete one is a clear error."""
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WhisperGLError(f"'{path.parent}' holds no features (no {cls.FILE}): "
                                 "make them with `whisper-gl features`") from None
        except (OSError, ValueError) as error:
            raise WhisperGLError(f"{path} is not a readable features manifest ({error})") from None
        names = {field.name for field in dataclasses.fields(cls)}
        required = {field.name for field in dataclasses.fields(cls)
                    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(values)) if isinstance(values, dict) else sorted(required)
        if missing:
            raise WhisperGLError(f"{path} lacks {', '.join(repr(name) for name in missing)}: "
                                 "make the features again with `whisper-gl features`")
        # Keys added by later versions are ignored: an older reader still works.
        return cls(**{name: value for name, value in values.items() if name in names})

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "FeaturesManifest":
        return cls.read(Path(folder) / cls.FILE)
