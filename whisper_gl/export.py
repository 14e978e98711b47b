"""Convert a transformers Whisper checkpoint into a CTranslate2 model for faster-whisper.

    whisper-gl export --model artifacts/model                     # -> artifacts/model/ctranslate2

The export (int8 by default: the fastest on CPU) lands in `<model>/ctranslate2`, where the
transcription engine looks for it. It carries `tokenizer.json` and `preprocessor_config.json`
(faster-whisper reads the window length and mel bins from it), is written atomically, and is
loaded and run once on a silent window before it replaces anything.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from . import WhisperGLError, error_line
from .backends import CTRANSLATE2_SUBDIR
from .config import QUANTIZATIONS, ExportConfig, ModelOptions, check_choice
from .models import resolve_model
from .store import atomic_dir

logger = logging.getLogger(__name__)

# Files faster-whisper reads beside model.bin.
SIDE_FILES = ("tokenizer.json", "preprocessor_config.json")


def _write_side_files(model_dir: Path, export_dir: Path) -> None:
    for name in SIDE_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, export_dir / name)
    # transformers 5 may keep the feature extractor only inside processor_config.json.
    if not (export_dir / "preprocessor_config.json").is_file():
        from transformers import WhisperFeatureExtractor

        WhisperFeatureExtractor.from_pretrained(model_dir).to_json_file(export_dir / "preprocessor_config.json")
    if not (export_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_dir).backend_tokenizer.save(str(export_dir / "tokenizer.json"))


def _check_export(export_dir: Path) -> None:
    """Load the export as the engine does and decode one second of silence (one token):
    a broken export, or a window faster-whisper cannot decode, fails here, not in an app."""
    from .backends import CTranslate2Backend

    CTranslate2Backend(export_dir, ModelOptions()).check()


def export_model(model: str, output_dir: str | None = None, quantization: str = "int8") -> Path:
    """Convert `model` (folder or Hub id) into a CTranslate2 folder; return its path."""
    from ctranslate2.converters import TransformersConverter

    check_choice("quantization", quantization, QUANTIZATIONS)
    model_dir = resolve_model(model)
    if not (model_dir / "config.json").is_file():
        raise WhisperGLError(f"'{model}' is not a transformers checkpoint (no config.json): nothing to convert")
    target = Path(output_dir) if output_dir else model_dir / CTRANSLATE2_SUBDIR
    with atomic_dir(target) as tmp:
        try:
            TransformersConverter(str(model_dir)).convert(str(tmp), quantization=quantization, force=True)
            _write_side_files(model_dir, tmp)
            _check_export(tmp)
        except Exception as error:  # noqa: BLE001 - converter and loader failures become one line
            raise WhisperGLError(
                f"cannot convert '{model}' to CTranslate2 ({error_line(error)}); the engine keeps using the "
                "transformers backend for this model"
            ) from None
    return target


def run(config: ExportConfig) -> Path:
    """`whisper-gl export`: convert, then say where the export went and how big it is."""
    target = export_model(config.model, config.output_dir, config.quantization)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"CTranslate2 {config.quantization} export written to {target} ({size / 1e6:.0f} MB)")
    return target
