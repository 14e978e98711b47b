#!/usr/bin/env python
"""Disk and memory that the presets' models take: measured on the demo's model, scaled by parameters.

What a fine-tuned model costs on disk does not depend on its weights, only on its parameter
count: this measures, on the demo's Whisper base fine-tune (`make demo`), the bytes per
parameter of its checkpoint (model.safetensors, fp32), of its CTranslate2 int8 export, and of one
Trainer checkpoint (model + AdamW state + scheduler, in <output-dir>.work/checkpoint-N), then
counts the parameters of Whisper small and medium (the `model1`/`model2` presets; built from
their configs on PyTorch's meta device: no weights, no download) and scales. Training memory
is given for the part that is arithmetic: fp32 weights, gradients and AdamW's two moments,
16 bytes per parameter; activations depend on batch, window and GPU kernels and are not
measured here (no GPU: see the recipe page).

    .venv/bin/python bench/model_sizes.py [--model artifacts/model] [--checkpoint DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import PRESET_OF, SHAPES  # noqa: E402  (one home for the small/medium shapes)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "model_sizes.json"
TRAINING_STATE_BYTES_PER_PARAMETER = 16  # fp32 weights + gradients + AdamW exp_avg + exp_avg_sq


def parameters(config) -> int:
    """Distinct parameters of a Whisper model with this config (tied embeddings counted once)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    return sum(parameter.numel() for parameter in model.parameters())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def latest_checkpoint(model: Path) -> Path | None:
    work = model.with_name(model.name + ".work")
    checkpoints = sorted(work.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/model",
                        help="a fine-tuned checkpoint with its CTranslate2 export (default: the demo's)")
    parser.add_argument("--checkpoint", default=None,
                        help="one Trainer checkpoint of that run (default: the last in <model>.work)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default: %(default)s)")
    args = parser.parse_args()
    from transformers import WhisperConfig

    model = Path(args.model)
    checkpoint = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(model)
    if checkpoint is None or not (model / "ctranslate2" / "model.bin").is_file():
        sys.exit(f"error: needs {model} with its ctranslate2/ export and a Trainer checkpoint (--checkpoint): "
                 "run `make demo` first")
    measured_config = WhisperConfig.from_pretrained(model)
    measured_parameters = parameters(measured_config)
    per_parameter = {
        "checkpoint": (model / "model.safetensors").stat().st_size / measured_parameters,
        "ctranslate2_int8": (model / "ctranslate2" / "model.bin").stat().st_size / measured_parameters,
        "trainer_checkpoint": folder_bytes(checkpoint) / measured_parameters,
    }

    def sizes(name: str, preset: str | None, count: int) -> dict:
        return {"model": name, "preset": preset, "parameters": count,
                "checkpoint_bytes": count * per_parameter["checkpoint"],
                "ctranslate2_int8_bytes": count * per_parameter["ctranslate2_int8"],
                "trainer_checkpoint_bytes": count * per_parameter["trainer_checkpoint"],
                "training_state_bytes": count * TRAINING_STATE_BYTES_PER_PARAMETER}

    rows = [sizes(f"Whisper base ({model}, measured)", "smoke", measured_parameters)]
    for shape, dims in SHAPES.items():
        config = WhisperConfig(**{**measured_config.to_dict(), **dims})  # same vocabulary, mels and positions
        rows.append(sizes(f"Whisper {shape} (scaled)", PRESET_OF[shape], parameters(config)))
    results = {"bench": "bench/model_sizes.py", "date": datetime.date.today().isoformat(),
               "measured_on": {"model": str(model), "checkpoint": f"{checkpoint.parent.name}/{checkpoint.name}",
                               "bytes_per_parameter": per_parameter},
               "method": "bytes per parameter measured on the demo's base-sized model, Whisper small and medium "
                         "scaled by their parameter counts; weights + gradients + AdamW is 16 bytes per "
                         "parameter (fp32), activations not included",
               "models": rows}
    for row in rows:
        print(f"{row['model']:<45} {row['parameters'] / 1e6:8.1f} M  checkpoint {row['checkpoint_bytes'] / 1e6:8.0f} MB"
              f"  int8 {row['ctranslate2_int8_bytes'] / 1e6:6.0f} MB  trainer checkpoint "
              f"{row['trainer_checkpoint_bytes'] / 1e6:7.0f} MB  training state {row['training_state_bytes'] / 1e9:5.1f} GB")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
