#!/usr/bin/env python
"""Training throughput and memory: our train.py path against the plain Hugging Face recipe, one run.

    .venv/bin/python bench/bench_training.py [--features DIR] [--base DIR] [--models small medium]
                                             [--steps 30] [--batch-size 16] [--nan-steps 200]
    .venv/bin/python bench/bench_training.py --tiny     # CPU check that every row runs (tiny models)

Rows, for Whisper small- and medium-shaped models (built from their configs with random weights:
throughput does not depend on the weights, and the Hub is not needed):

- plain recipe: the Hugging Face "fine-tune Whisper" blog as written: features stored as
  80 x 3000 float32 lists, its DataCollatorSpeechSeq2SeqWithPadding (feature_extractor.pad +
  tokenizer.pad), Seq2SeqTrainingArguments(fp16, gradient checkpointing, batch 16);
- ours: whisper_gl.training as train.py runs it with the model1 (small) / model2 (medium) preset,
  in bf16 and fp16, gradient checkpointing as the preset sets it (on); then one change at a time
  on the bf16 row: eager attention instead of SDPA, no gradient checkpointing, 4 dataloader
  workers, group_by_length (train_sampling_strategy), torch.compile.

Every row runs in a fresh process on the same features (bench/step_clock.py: one untimed warm-up
step, then --steps timed steps, batches included; evaluation and checkpoints cancelled), so its
peak memory is its own: peak GPU memory allocated on CUDA, peak RSS on CPU. Last, the fp16 check:
--nan-steps steps of the real offline Whisper base in fp16 through our path; every logged loss and
gradient norm must be finite (fp16 needs CUDA: on CPU the check runs in bf16, only to exercise it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisper_gl.models import resolve_model  # noqa: E402
from whisper_gl.paths import BASE_MODEL, home  # noqa: E402

# Whisper small and medium (openai/whisper-small, openai/whisper-medium config.json); --tiny: small stand-ins.
SHAPES = {
    "small": dict(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                  decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
    "medium": dict(d_model=1024, encoder_layers=24, decoder_layers=24, encoder_attention_heads=16,
                   decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096),
}
TINY_SHAPES = {
    "small": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128),
    "medium": dict(d_model=96, encoder_layers=3, decoder_layers=3, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=192, decoder_ffn_dim=192),
}
PRESET_OF = {"small": "model1", "medium": "model2"}


@dataclass
class Row:
    """One measured configuration."""

    label: str
    recipe: str  # "ours" or "plain"
    model: str  # shape name: small, medium
    precision: str
    attention: str = "sdpa"
    gradient_checkpointing: bool = True
    trainer: dict[str, Any] = field(default_factory=dict)  # Trainer argument overrides


def rows_for(model: str, gpu: bool) -> list[Row]:
    """The table's rows for one model shape; on CPU, fp32/bf16 stand in for fp16 (CUDA only)."""
    half = "fp16" if gpu else "fp32"
    fast = "bf16"
    return [
        Row(f"plain recipe ({half})", "plain", model, half),
        Row(f"ours ({half})", "ours", model, half),
        Row(f"ours ({fast})", "ours", model, fast),
        Row(f"ours ({fast}), eager attention", "ours", model, fast, attention="eager"),
        Row(f"ours ({fast}), no gradient checkpointing", "ours", model, fast, gradient_checkpointing=False),
        Row(f"ours ({fast}), 4 dataloader workers", "ours", model, fast, trainer={"dataloader_num_workers": 4}),
        Row(f"ours ({fast}), group_by_length", "ours", model, fast,
            trainer={"train_sampling_strategy": "group_by_length", "length_column_name": "label_length"}),
        Row(f"ours ({fast}), torch.compile", "ours", model, fast, trainer={"torch_compile": True}),
    ]


# --- models and data -----------------------------------------------------------------------------

def shaped_model(base: Path, shape: dict, folder: Path) -> Path:
    """A Whisper of the given shape with random weights and the base model's processor."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    config = WhisperConfig.from_pretrained(base)
    for name, value in shape.items():
        setattr(config, name, value)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(base)
    model.generation_config.alignment_heads = [[0, 0]]  # the base model's heads may not exist here
    model.save_pretrained(folder)
    processor = WhisperProcessor.from_pretrained(base)
    processor.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)
    return folder


def blog_dataset(features: str, folder: Path) -> Path:
    """The same clips as the blog stores them: 80 x 3000 float32 log-mels (lists in Arrow) + labels."""
    from datasets import Features, Sequence, Value

    from whisper_gl.features import pad_features
    from whisper_gl.training import load_training_features

    dataset, manifest = load_training_features(features)
    train = dataset["train"].with_format("numpy")
    schema = Features({"input_features": Sequence(Sequence(Value("float32"))), "labels": Sequence(Value("int64"))})
    blog = train.map(lambda row: {"input_features": pad_features(row["input_features"], manifest.window_frames)
                                  .astype("float32"), "labels": row["labels"]},
                     remove_columns=train.column_names, features=schema)
    blog.with_format(None).save_to_disk(str(folder))
    return folder


# --- one row, in its own process -------------------------------------------------------------------

@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """The blog's collator, as written there."""

    processor: Any
    decoder_start_token_id: int

    def __call__(self, features):
        input_features = [{"input_features": feature["input_features"]} for feature in features]
        batch = self.processor.feature_extractor.pad(input_features, return_tensors="pt")
        label_features = [{"input_ids": feature["labels"]} for feature in features]
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def plain_trainer(row: Row, spec: dict, scratch: str):
    """The blog's Seq2SeqTrainer (its arguments; evaluation never reached: the clock cancels it)."""
    import torch
    from datasets import load_from_disk
    from transformers import (Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperForConditionalGeneration,
                              WhisperProcessor)

    processor = WhisperProcessor.from_pretrained(spec["model_dir"], language="galician", task="transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(spec["model_dir"])
    model.generation_config.language = "galician"
    model.generation_config.task = "transcribe"
    model.generation_config.forced_decoder_ids = None
    args = Seq2SeqTrainingArguments(
        output_dir=scratch, per_device_train_batch_size=spec["batch_size"], gradient_accumulation_steps=1,
        learning_rate=1e-5, warmup_steps=500, max_steps=spec["steps"] + 1, gradient_checkpointing=True,
        fp16=row.precision == "fp16", bf16=row.precision == "bf16", eval_strategy="steps",
        per_device_eval_batch_size=8, predict_with_generate=True, generation_max_length=225,
        save_steps=1000, eval_steps=1000, logging_steps=25, report_to=[], push_to_hub=False,
        use_cpu=not torch.cuda.is_available())
    dataset = load_from_disk(spec["blog_dataset"])
    return Seq2SeqTrainer(args=args, model=model, train_dataset=dataset, eval_dataset=dataset,
                          data_collator=DataCollatorSpeechSeq2SeqWithPadding(processor,
                                                                             model.config.decoder_start_token_id),
                          processing_class=processor.feature_extractor)


def our_trainer(row: Row, spec: dict, scratch: str, *, steps: int, model_dir: str, logging_steps: int | None = None):
    """train.py's path: the preset, check_inputs, prepared_model, training_arguments, build_trainer."""
    from whisper_gl.config import TrainConfig
    from whisper_gl.training import (build_trainer, check_inputs, hardware_precision, prepared_model,
                                     resolve_config, training_arguments)

    config = resolve_config(TrainConfig(
        preset=PRESET_OF.get(row.model, "model1"), model=model_dir, features=spec["features"],
        batch_size=spec["batch_size"], max_steps=steps, eval_steps=steps, precision=row.precision,
        gradient_checkpointing=row.gradient_checkpointing, logging_steps=logging_steps or steps))
    config = dataclasses.replace(config, precision=hardware_precision(config.precision))
    inputs = check_inputs(config, training=True)
    if "length_column_name" in row.trainer:
        train = inputs.dataset["train"]
        inputs.dataset["train"] = train.add_column("label_length", [len(label) for label in train["labels"]])
    processor, model = prepared_model(config, inputs)
    model.set_attn_implementation(row.attention)
    args = training_arguments(config, scratch, report=False, **row.trainer)
    args.eval_on_start = False
    return build_trainer(config, model, processor, inputs.dataset, inputs.manifest, args)


def run_row(row: Row, spec: dict) -> dict:
    import torch

    from step_clock import timed_steps

    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        if row.recipe == "plain":
            trainer = plain_trainer(row, spec, scratch)
        else:
            trainer = our_trainer(row, spec, scratch, steps=spec["steps"] + 1, model_dir=spec["model_dir"])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        rate, per_step = timed_steps(trainer, spec["batch_size"])
    if torch.cuda.is_available():
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB GPU"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB RSS"
    return {"samples_per_second": rate, "seconds_per_step": per_step, "peak": peak}


def fp16_check(spec: dict) -> dict:
    """--nan-steps fp16 steps of the real base model through our path: every logged loss finite?"""
    import torch

    from step_clock import StepClock

    row = Row("fp16 check", "ours", "base", spec["nan_precision"])
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        trainer = our_trainer(row, spec, scratch, steps=spec["nan_steps"], model_dir=spec["base"], logging_steps=1)
        trainer.add_callback(StepClock())
        trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    bad = [entry["step"] for entry in logged
           if not math.isfinite(entry["loss"]) or not math.isfinite(entry.get("grad_norm", 0.0))]
    return {"steps": trainer.state.global_step, "losses": len(logged), "non_finite_steps": bad,
            "first_loss": logged[0]["loss"], "last_loss": logged[-1]["loss"],
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def in_own_process(task: str, payload: dict, scratch: str) -> dict:
    """Run one row (or the fp16 check) in a fresh Python, so its memory peak is its own (and its
    torch.compile cache is this run's, not whatever an earlier run left in /tmp)."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(scratch) / "inductor")}
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps({"task": task, **payload})],
                          capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.splitlines() if re.match(r"^\w*(Error|Exception)\b", line)]
        return {"error": (errors or ["failed"])[-1][:200]}
    return json.loads(lines[-1][len("RESULT "):])


# --- the table ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", default=str(home().features), help="training features (default: %(default)s)")
    parser.add_argument("--base", default=BASE_MODEL, help="Whisper base (folder or built-in name): processor, shapes' vocabulary, "
                                                                  "fp16 check (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="model shapes")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row, after one warm-up step")
    parser.add_argument("--batch-size", type=int, default=16, help="per-device batch (the presets': 16)")
    parser.add_argument("--nan-steps", type=int, default=200, help="fp16 steps of the base model (CUDA only)")
    parser.add_argument("--tiny", action="store_true", help="tiny models, 2 steps, batch 2: check the rows run on CPU")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one row, in its own process
    args = parser.parse_args(argv)
    args.base = str(resolve_model(args.base))
    if args.one:
        spec = json.loads(args.one)
        task = spec.pop("task")
        result = fp16_check(spec) if task == "fp16" else run_row(Row(**spec.pop("row")), spec)
        print("RESULT " + json.dumps(result))
        return
    import torch

    gpu = torch.cuda.is_available()
    if args.tiny:
        args.steps, args.batch_size, args.nan_steps = 2, 2, 3
    device = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{device}; {args.features}; batch {args.batch_size}; 1 warm-up + {args.steps} timed steps per row")
    with tempfile.TemporaryDirectory(prefix="bench-training-models-") as scratch:
        spec = {"features": args.features, "batch_size": args.batch_size, "steps": args.steps, "base": args.base,
                "nan_steps": args.nan_steps, "nan_precision": "fp16" if gpu else "bf16",
                "blog_dataset": str(blog_dataset(args.features, Path(scratch) / "blog-features"))}
        print("| model | recipe | samples/s | s/step | vs plain | peak memory |")
        print("|---|---|---:|---:|---:|---|")
        for name in args.models:
            shape = (TINY_SHAPES if args.tiny else SHAPES)[name]
            print_rows(name, str(shaped_model(Path(args.base), shape, Path(scratch) / name)), spec, scratch, gpu)
        check = in_own_process("fp16", spec, scratch)
    note = "" if gpu else " (fp16 needs CUDA: bf16 here, to exercise the check only)"
    print(f"\n{spec['nan_precision']} check{note}, {args.base}, {args.nan_steps} steps: {json.dumps(check)}")


def print_rows(name: str, model_dir: str, spec: dict, scratch: str, gpu: bool) -> None:
    """The model's rows, each in its own process, against the plain recipe's samples/s."""
    plain = None
    for row in rows_for(name, gpu):
        result = in_own_process("row", {**spec, "model_dir": model_dir, "row": dataclasses.asdict(row)}, scratch)
        if "error" in result:
            print(f"| {name} | {row.label} | - | - | - | failed: {result['error']} |", flush=True)
            continue
        plain = plain or (result["samples_per_second"] if row.recipe == "plain" else None)
        ratio = f"{result['samples_per_second'] / plain:.2f}x" if plain else "-"
        print(f"| {name} | {row.label} | {result['samples_per_second']:.2f} | {result['seconds_per_step']:.3f} | "
              f"{ratio} | {result['peak']} |", flush=True)

if __name__ == "__main__":
    main()
