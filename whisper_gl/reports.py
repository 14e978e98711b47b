"""What a training run leaves behind: results.json, training_curves.png, the model card.

The curve comes from the Trainer's log history: every evaluation on the selection split
(validation by default), the untuned base at step 0 included, and the best step. The
reported numbers are the test split's, measured twice and only twice: the untuned base before
the first step and the chosen checkpoint after the last one. With --select-on test (the seed's
recipe) they are the selection evaluations themselves, and every report says so: optimistic.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .metrics import METRIC_NAMES, with_interval
from .paths import BASE_MODEL, home
from .store import HUB_ID, is_hub_id

# The built-in model `base` is OpenAI's Whisper base converted offline; the Hub knows it by this id.
OFFLINE_BASE_HUB_ID = "openai/whisper-base"

HYPERPARAMETERS = ("max_steps", "eval_steps", "save_steps", "batch_size", "eval_batch_size", "grad_accum",
                   "learning_rate", "warmup_steps", "lr_scheduler", "weight_decay", "gradient_checkpointing",
                   "freeze_encoder", "timestamp_share", "precision", "generation_max_length", "seed", "lora")
COLUMNS = {"wer": "WER", "cer": "CER", "wer_ortho": "WER ortho", "cer_ortho": "CER ortho"}
# Each score with its 95 % bootstrap interval, as the metrics name them.
SCORE_KEYS = tuple(f"{name}{end}" for name in METRIC_NAMES for end in ("", "_low", "_high"))
OPTIMISTIC = "selected and reported on the same split: optimistic"


def scores_from(metrics: dict, prefix: str) -> dict:
    """The scores (with intervals) and the clip count in a Trainer metrics dict ("eval_wer", ...)."""
    scores = {key: metrics[f"{prefix}_{key}"] for key in SCORE_KEYS if f"{prefix}_{key}" in metrics}
    return {**scores, "clips": metrics.get(f"{prefix}_clips")}


def evaluation_rows(log_history: list[dict]) -> list[dict]:
    """One row per evaluation: step, train loss (mean of the losses logged since the previous
    evaluation; none at step 0), eval loss, WER/CER normalised and orthographic, clips scored,
    eval time."""
    rows, losses = [], []
    for entry in sorted(log_history, key=lambda e: (e.get("step", 0), "eval_wer" in e)):
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_wer" in entry:
            row = {"step": entry["step"], "train_loss": sum(losses) / len(losses) if losses else None,
                   "eval_loss": entry.get("eval_loss")}
            row.update(scores_from(entry, "eval"))
            row["eval_seconds"] = entry.get("eval_runtime")
            rows.append(row)
            losses = []
    return rows


def build_results(state, config, manifest, *, layout: dict[str, Any], test: tuple[dict | None, dict | None],
                  train_clips: int, test_clips: int, selection_clips: int, wall_seconds: float,
                  step_seconds: list[float]) -> dict[str, Any]:
    """The run's numbers: every selection evaluation, the best step, the test split before (the
    untuned model) and after (the chosen checkpoint), and what the processes added up to
    (`layout`: world size, per-device and global batch)."""
    rows = evaluation_rows(state.log_history)
    best_step = state.best_global_step
    if best_step is None and state.best_model_checkpoint:
        best_step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    by_step = {row["step"]: row for row in rows}
    optimistic = config.select_on == "test"
    before, after = (by_step.get(0), by_step.get(best_step)) if optimistic else test
    settings = dataclasses.asdict(config)
    return {
        "base_model": config.model,
        "features": config.features,
        "dataset": manifest.dataset or None,
        "language": manifest.language,
        "task": manifest.task,
        "preset": config.preset,
        "hyperparameters": {name: settings[name] for name in HYPERPARAMETERS},
        "train_clips": train_clips,
        "test_clips": selection_clips if optimistic else test_clips,  # the seed's recipe scores what it selects on
        "selection": {"split": config.select_on, "clips": selection_clips,
                      "from": manifest.splits.get(config.select_on, config.select_on), "optimistic": optimistic},
        "processes": {**layout, "samples_seen": state.global_step * layout["global_batch"],
                      "epochs": state.epoch},
        "evaluations": rows,
        "best_step": best_step,
        "before": before,
        "after": after,
        "timing": {
            "steps": state.global_step,
            "seconds_per_step": sum(step_seconds) / len(step_seconds) if step_seconds else None,
            "steps_timed": len(step_seconds),
            "evaluation_seconds": sum(row["eval_seconds"] or 0 for row in rows),
            "total_seconds": wall_seconds,
        },
    }


def write_reports(folder: Path, results: dict, log_history: list[dict]) -> None:
    """results.json, training_curves.png and README.md (the model card) into `folder`."""
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_curves(log_history, results, folder / "training_curves.png")
    (folder / "README.md").write_text(model_card(results))


def plot_curves(log_history: list[dict], results: dict, path: Path) -> None:
    """Loss (train and eval) and WER (normalised and orthographic) against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    rows = results["evaluations"]
    fig, (loss_ax, wer_ax) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        loss_ax.plot(*zip(*train), label="train loss", alpha=0.8)
    loss_ax.plot([r["step"] for r in rows], [r["eval_loss"] for r in rows], "o-", label="eval loss")
    loss_ax.set(xlabel="step", ylabel="loss", title="Loss")
    wer_ax.plot([r["step"] for r in rows], [r["wer"] for r in rows], "o-", label="WER (normalised)")
    wer_ax.plot([r["step"] for r in rows], [r["wer_ortho"] for r in rows], "s--", label="WER (orthographic)")
    split = (results.get("selection") or {}).get("split", "test")
    wer_ax.set(xlabel="step", ylabel="%", title=f"Word error rate on the {split} split")
    if results["best_step"] is not None:
        for ax in (loss_ax, wer_ax):
            ax.axvline(results["best_step"], color="grey", linestyle=":", label="best step")
    for ax in (loss_ax, wer_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def metrics_table(named_scores: dict[str, dict[str, float]]) -> str:
    """A fixed-width table: one line per model, WER/CER normalised and orthographic (%), each
    with its 95 % interval when the scores carry one."""
    cells = {name: [with_interval(scores, key, 2) for key in COLUMNS] for name, scores in named_scores.items()}
    width = max(len(name) for name in named_scores)
    column = max(9, *(len(cell) for row in cells.values() for cell in row))
    lines = [f"{'':<{width}}  " + "  ".join(f"{title:>{column}}" for title in COLUMNS.values())]
    lines += [f"{name:<{width}}  " + "  ".join(f"{cell:>{column}}" for cell in row) for name, row in cells.items()]
    return "\n".join(lines)


def selection_note(results: dict) -> str:
    """Which split chose the checkpoint, and whether the reported numbers are optimistic."""
    selection = results.get("selection") or {"split": "test", "optimistic": True, "clips": results["test_clips"]}
    if selection["optimistic"]:
        return f"best checkpoint chosen on the same {results['test_clips']} test clips: {OPTIMISTIC}"
    source = f", {selection['from']}" if selection.get("from") not in (None, selection["split"]) else ""
    return (f"best checkpoint chosen on {selection['clips']} {selection['split']} clips{source}; "
            "test scored once, at the end")


def before_after_table(results: dict) -> str:
    """The base model and the fine-tuned model on the same held-out test clips."""
    named = {}
    if results["before"]:
        named["base (step 0)"] = results["before"]
    if results["after"]:
        named[f"fine-tuned (best, step {results['best_step']})"] = results["after"]
    title = (f"WER/CER (%) on {results['test_clips']} held-out test clips, normalised and orthographic, with 95 % "
             f"bootstrap intervals ({selection_note(results)}):")
    return title + "\n" + metrics_table(named)


def markdown_table(rows: list[dict]) -> str:
    """The seed's results table: one line per evaluation."""
    header = "| Step | Training loss | Validation loss | WER | CER | WER ortho | CER ortho |"
    lines = [header, "|" + "---:|" * 7]

    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    for r in rows:
        lines.append(f"| {r['step']} | {number(r['train_loss'], 4)} | {number(r['eval_loss'], 4)} | "
                     f"{number(r['wer'], 2)} | {number(r['cer'], 2)} | {number(r['wer_ortho'], 2)} | "
                     f"{number(r['cer_ortho'], 2)} |")
    return "\n".join(lines)


def batch_line(results: dict) -> str:
    """How big a step was, on how many processes, and how much data went through."""
    from .distributed import batch_text

    processes = results.get("processes")
    if not processes:
        return ""
    return f"{batch_text(processes)}; {processes['samples_seen']} samples seen ({processes['epochs']:.2f} epochs)"


def hub_base_model(location: str) -> str | None:
    """The base model's Hub id (for the card's metadata), when it has one."""
    if is_hub_id(location):
        return location
    if location == BASE_MODEL or Path(location).resolve() == home().base_model.resolve():
        return OFFLINE_BASE_HUB_ID
    return None


def hub_datasets(results: dict) -> list[str]:
    """Hub ids among the features and the dataset they were extracted from."""
    candidates = (results.get("dataset"), results["features"])
    return [name for name in candidates if name and HUB_ID.match(name) and not Path(name).exists()]


def card_metadata(results: dict):
    """Hub front matter: language, license, tags, base model, datasets and a model-index with WER."""
    from huggingface_hub import EvalResult, ModelCardData

    datasets = hub_datasets(results)
    dataset = datasets[0] if datasets else (results.get("dataset") or results["features"])
    after = results["after"] or {}
    eval_results = [
        EvalResult(task_type="automatic-speech-recognition", task_name="Speech recognition",
                   dataset_type=dataset, dataset_name=dataset, dataset_split="test",
                   metric_type=metric, metric_name=label, metric_value=round(after[key], 2))
        for key, metric, label in (("wer", "wer", "WER (normalised)"), ("cer", "cer", "CER (normalised)"),
                                   ("wer_ortho", "wer", "WER (orthographic)"))
        if key in after
    ]
    return ModelCardData(
        language=results["language"], license="apache-2.0", library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=["whisper", "automatic-speech-recognition", "galician", "whisper-gl"],
        base_model=hub_base_model(results["base_model"]),
        datasets=datasets or None,
        model_name=f"{hub_base_model(results['base_model']) or results['base_model']} fine-tuned for "
                   f"{results['language']}",
        eval_results=eval_results or None,
    )


def model_card(results: dict) -> str:
    """README.md of the checkpoint: what it is, how it was trained, how well it does."""
    from huggingface_hub import ModelCard

    hyper = results["hyperparameters"]
    settings = "\n".join(f"- {name}: {value}" for name, value in hyper.items())
    before, after = results["before"], results["after"]
    summary = ""
    if before and after:
        summary = (f"Normalised WER on the {results['test_clips']} held-out test clips went from "
                   f"{with_interval(before, 'wer', 2)} % (the base model, step 0) to {with_interval(after, 'wer', 2)} % "
                   f"(best step {results['best_step']}); in brackets the 95 % bootstrap interval. "
                   f"The {selection_note(results)}.\n\n")
    split = (results.get("selection") or {}).get("split", "test")
    body = f"""
# {results['base_model']} fine-tuned for speech recognition in `{results['language']}`

Fine-tuned from `{results['base_model']}` with the whisper-gl pipeline
(`train.py --preset {results['preset']}`) on the features in `{results['features']}`:
{results['train_clips']} training clips, {results['test_clips']} test clips. Task: {results['task']}.

{summary}## Evaluations

WER/CER in percent on the {split} split, at each evaluation; "normalised" uses transformers'
BasicTextNormalizer (lower case, no punctuation, accents kept), "ortho" compares the raw text.
The checkpoint kept here is the one with the lowest normalised WER there (step {results['best_step']}).

{markdown_table(results['evaluations'])}

## Training

Preset `{results['preset']}`:

{settings}

Steps: {batch_line(results) or "see the settings above"}.

A share of the training clips (`timestamp_share`) carries timestamp labels so the model
keeps predicting timestamps for long-form transcription.

## Usage

```python
from transformers import WhisperForConditionalGeneration, WhisperProcessor

processor = WhisperProcessor.from_pretrained("path/or/repo")
model = WhisperForConditionalGeneration.from_pretrained("path/or/repo")
ids = model.generate(processor(audio, sampling_rate=16000, return_tensors="pt").input_features,
                     language="{results['language']}", task="{results['task']}")
print(processor.batch_decode(ids, skip_special_tokens=True)[0])
```
"""
    return str(ModelCard(f"---\n{card_metadata(results).to_yaml()}\n---\n{body}"))
