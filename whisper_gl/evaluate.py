"""Score models on test sets the way users meet them: through the transcription engine.

    whisper-gl evaluate --model base --model fine-tuned \
        --dataset ~/.cache/whisper-gl/cv-corpus-sample/gl --dataset ~/.cache/whisper-gl/examples/long.mp3

Every model transcribes every clip of every test set with the engine the apps use (same
backend choice and decoding options, recorded in the report); a long recording is transcribed
whole. The scores are corpus WER/CER, normalised and orthographic, each with its 95 %
bootstrap confidence interval (whisper_gl.metrics; none for a single recording, where a bootstrap
has nothing to resample). It runs on the core install: local test sets are read without
`datasets`, and the plot is drawn when matplotlib is there. Written atomically into --output-dir:

    report.md     models x datasets: WER, CER (with intervals), clips, hours, real-time factor;
                  the most frequent word confusions per model; clips that could not be decoded
    metrics.json  the same numbers, machine-readable, with the decoding options
    wer.png       grouped bars (datasets x models) with the intervals as whiskers (with matplotlib)
    errors.csv    one row per clip and model, worst first: reference, hypothesis, WER, CER,
                  substitutions, insertions, deletions (normalised words)
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import mimetypes
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from . import WhisperGLError
from .config import DecodingOptions, EvaluateConfig, ModelOptions, subset
from .metrics import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, METRIC_NAMES, Utterance, corpus_scores,
                      score_utterance, with_interval, word_confusions)
from .paths import install_command, missing_file
from .store import atomic_dir, check_replaceable

PLOT_FILE = "wer.png"
ERRORS_COLUMNS = ("model", "dataset", "path", "reference", "hypothesis", "wer", "cer", "substitutions",
                  "insertions", "deletions", "error")


@dataclass(frozen=True)
class Clip:
    """One recording to transcribe and what was said in it."""

    name: str  # a path, or the name the dataset gives it
    audio: str | bytes  # what the engine reads
    reference: str


@dataclass
class TestSet:
    name: str
    clips: list[Clip]


@dataclass
class Outcome:
    """One model on one test set."""

    model: str
    backend: str
    dataset: str
    utterances: list[Utterance] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # the clip of each utterance
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)
    audio_seconds: float = 0.0
    elapsed: float = 0.0

    def scores(self) -> dict[str, float]:
        return corpus_scores(self.utterances, intervals=True) if self.utterances else {}

    def summary(self) -> dict:
        return {"model": self.model, "backend": self.backend, "dataset": self.dataset,
                "clips": len(self.utterances), "failed": [{"clip": c, "reason": r} for c, r in self.failed],
                "audio_hours": self.audio_seconds / 3600,
                "real_time_factor": self.elapsed / self.audio_seconds if self.audio_seconds else None,
                **self.scores()}


# --- test sets -----------------------------------------------------------------------------------

def load_test_set(spec: str, config: EvaluateConfig) -> TestSet:
    """A test set from a media file with a .txt beside it, a features folder, or any feature-stage source."""
    path = Path(spec).expanduser()
    if not path.exists() and (mimetypes.guess_type(path.name)[0] or "").startswith(("audio/", "video/")):
        raise WhisperGLError(missing_file(path))
    if path.is_file() and path.suffix != ".txt":
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            raise WhisperGLError(f"'{spec}' is a file: a recording to evaluate needs its transcript beside it, "
                                 f"{transcript.absolute()}")
        return TestSet(spec, [Clip(str(path), str(path), transcript.read_text(encoding="utf-8").strip())])
    source, split = spec, config.split
    if (path / "features_config.json").is_file():  # features keep no audio: evaluate their source
        from .manifest import FeaturesManifest

        manifest = FeaturesManifest.load(path)
        source, split = manifest.dataset, manifest.splits.get(config.split, config.split)
        if " of " in split:
            raise WhisperGLError(f"the {config.split} split of '{spec}' was drawn from {split}: evaluate its "
                                 f"source '{source}' with --split instead")
    return TestSet(spec, _source_clips(source, split, config))


def _source_clips(source: str, split: str, config: EvaluateConfig) -> list[Clip]:
    from .sources import load_source

    loaded = load_source(source, {"eval": split}, optional=(), config=config.config, revision=config.revision,
                         audio_column=config.audio_column, text_column=config.text_column,
                         split_flag="--split")["eval"]
    clips = [Clip(_clip_name(row["audio"].get("path"), source) or f"{split}[{i}]",
                  row["audio"].get("bytes") or row["audio"]["path"], (row["sentence"] or "").strip())
             for i, row in enumerate(islice(loaded, config.max_samples))]
    if not clips:
        raise WhisperGLError(f"'{source}' has no clips in its {split} split: nothing to evaluate")
    return clips


def _clip_name(path: str | None, source: str) -> str | None:
    """A clip's path relative to its dataset folder when it lies inside it (clips/x.mp3)."""
    if not path or not Path(source).is_dir():
        return path
    try:
        return str(Path(path).resolve().relative_to(Path(source).resolve()))
    except ValueError:
        return path


# --- transcription ---------------------------------------------------------------------------------

def run_model(model: str, test_sets: list[TestSet], config: EvaluateConfig) -> list[Outcome]:
    from tqdm.auto import tqdm

    from .transcribe import Transcriber

    engine = Transcriber(options=subset(ModelOptions, config, model=model), decoding=subset(DecodingOptions, config))
    outcomes = []
    for test_set in test_sets:
        outcome = Outcome(model, engine.backend, test_set.name)
        for clip in tqdm(test_set.clips, desc=f"{Path(model).name or model} on {Path(test_set.name).name}",
                         unit="clip"):
            try:
                result = engine.transcribe(clip.audio)
            except WhisperGLError as error:  # one bad clip is listed, not fatal
                outcome.failed.append((clip.name, str(error)))
                continue
            outcome.audio_seconds += result.duration
            outcome.elapsed += result.elapsed
            scored = score_utterance(result.text, clip.reference)
            if scored is None:
                outcome.failed.append((clip.name, "empty reference"))
                continue
            outcome.utterances.append(scored)
            outcome.names.append(clip.name)
        outcomes.append(outcome)
    return outcomes


def evaluate(config: EvaluateConfig) -> list[dict]:
    """`whisper-gl evaluate`: every model on every test set; writes the four reports."""
    from .transcribe import default_model

    models = config.model or [default_model()]
    if config.max_samples is not None and config.max_samples < 1:
        raise WhisperGLError("--max-samples must be at least 1")
    check_replaceable(config.output_dir)
    test_sets = [load_test_set(spec, config) for spec in config.dataset]
    outcomes = [outcome for model in models for outcome in run_model(model, test_sets, config)]
    with atomic_dir(config.output_dir) as folder:
        write_reports(folder, outcomes, config)
    summaries = [outcome.summary() for outcome in outcomes]
    print(results_table(summaries))
    if not can_plot():
        print(f"note: {no_plot_note()}")
    print(f"report: {Path(config.output_dir).absolute() / 'report.md'}")
    return summaries


# --- reports ---------------------------------------------------------------------------------

def write_reports(folder: Path, outcomes: list[Outcome], config: EvaluateConfig) -> None:
    summaries = [outcome.summary() for outcome in outcomes]
    decoding = dataclasses.asdict(subset(DecodingOptions, config))
    confusions = _confusions_by_model(outcomes)
    metrics = {"decoding": decoding, "split": config.split,
               "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "confidence": CONFIDENCE},
               "results": summaries,
               "confusions": {model: [list(c) for c in pairs] for model, pairs in confusions.items()}}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _write_errors(folder / "errors.csv", outcomes)
    plotted = can_plot()
    if plotted:
        plot_wer(summaries, folder / PLOT_FILE)
    (folder / "report.md").write_text(report_markdown(summaries, confusions, decoding, config, plotted=plotted),
                                      encoding="utf-8")


def can_plot() -> bool:
    """Whether matplotlib (of the train extra) is there to draw wer.png."""
    return importlib.util.find_spec("matplotlib") is not None


def no_plot_note() -> str:
    return f"no {PLOT_FILE}: the plot needs matplotlib ({install_command('train')}, or pip install matplotlib)"


def _confusions_by_model(outcomes: list[Outcome]) -> dict[str, list[tuple[str, str, int]]]:
    models = dict.fromkeys(outcome.model for outcome in outcomes)
    return {model: word_confusions([u for o in outcomes if o.model == model for u in o.utterances])
            for model in models}


def _write_errors(path: Path, outcomes: list[Outcome]) -> None:
    rows = []
    for outcome in outcomes:
        for name, utterance in zip(outcome.names, outcome.utterances):
            words = utterance.words
            rows.append({"model": outcome.model, "dataset": outcome.dataset, "path": name,
                         "reference": utterance.reference, "hypothesis": utterance.hypothesis,
                         "wer": round(words.rate, 2), "cer": round(utterance.chars.rate, 2),
                         "substitutions": words.substitutions, "insertions": words.insertions,
                         "deletions": words.deletions, "error": ""})
        rows += [{"model": outcome.model, "dataset": outcome.dataset, "path": name, "error": reason}
                 for name, reason in outcome.failed]
    rows.sort(key=lambda row: (row["error"] == "", -(row.get("wer") or 0)))  # failures, then worst first
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ERRORS_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def results_table(summaries: list[dict]) -> str:
    """Markdown: one row per model and test set, WER/CER with their 95 % intervals."""
    lines = ["| model | dataset | backend | clips | hours | RTF | WER % | CER % | WER ortho % | CER ortho % |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        scores = [with_interval(s, name) if name in s else "-" for name in METRIC_NAMES]
        rtf = f"{s['real_time_factor']:.3f}" if s["real_time_factor"] is not None else "-"
        lines.append(f"| {s['model']} | {s['dataset']} | {s['backend']} | {s['clips']} | {s['audio_hours']:.3f} | "
                     f"{rtf} | " + " | ".join(scores) + " |")
    return "\n".join(lines)


def report_markdown(summaries: list[dict], confusions: dict, decoding: dict, config: EvaluateConfig, *,
                    plotted: bool = True) -> str:
    options = ", ".join(f"{key} {value}" for key, value in decoding.items())
    lines = [
        "# Evaluation", "",
        f"Split `{config.split}`; every model through the transcription engine ({options}). WER/CER in percent, "
        f"normalised (BasicTextNormalizer: lower case, no punctuation, accents kept) and orthographic; in "
        f"brackets the {CONFIDENCE:.0%} bootstrap interval over utterances ({BOOTSTRAP_RESAMPLES} resamples, "
        f"seed {BOOTSTRAP_SEED}; none for a single recording). RTF: processing time over audio time.", "",
        results_table(summaries), "", f"![WER]({PLOT_FILE})" if plotted else f"({no_plot_note()}.)", "",
        "## Most frequent word confusions (reference → hypothesis, normalised)", "",
    ]
    for model, pairs in confusions.items():
        shown = ", ".join(f"{ref} → {hyp} ({count})" for ref, hyp, count in pairs) or "none"
        lines += [f"- **{model}**: {shown}"]
    failed = [(s["model"], s["dataset"], f["clip"], f["reason"]) for s in summaries for f in s["failed"]]
    if failed:
        lines += ["", "## Clips that could not be scored", ""]
        lines += [f"- {model} on {dataset}: `{clip}`: {reason}" for model, dataset, clip, reason in failed]
    lines += ["", "## Why these figures can move between runs", "",
              reproducibility(list(confusions) or list(dict.fromkeys(s["model"] for s in summaries)), decoding)]
    lines += ["", "Per clip, worst first: `errors.csv`. Machine-readable: `metrics.json`."]
    return "\n".join(lines) + "\n"


def reproducibility(models: list[str], decoding: dict) -> str:
    """What makes another run give other figures, and the seeds these were made with."""
    sampled = [f"{t:g}" for t in decoding["temperatures"] if t > 0]
    sampling = (f"decoding at temperature {', '.join(sampled)} (the fallback after a decode that loops or scores "
                "too low) samples without a fixed seed, as faster-whisper does, so a clip that falls back can come "
                "out differently" if sampled else "decoding is deterministic here (temperature 0 only)")
    seeds = "; ".join(f"`{model}`: {_training_seed(model)}" for model in models)
    return (f"The models and clips being the same, {sampling}; beam search itself is deterministic on one machine, "
            "but CPUs with other instruction sets (AVX2, AVX-512) round differently. A model fine-tuned on a CPU "
            "is not bit-identical from one training run to the next even with the same seed (threaded reductions "
            f"add in another order). Training seeds: {seeds}. The intervals are reproducible: the bootstrap is "
            f"seeded (seed {BOOTSTRAP_SEED}).")


def _training_seed(model: str) -> str:
    try:
        results = json.loads((Path(model) / "results.json").read_text(encoding="utf-8"))
        return f"seed {results['hyperparameters']['seed']} (its results.json)"
    except (OSError, ValueError, KeyError, TypeError):
        return "not trained by whisper-gl train (no results.json)"


def plot_wer(summaries: list[dict], path: Path) -> None:
    """Grouped bars: one group per test set, one bar per model, the 95 % interval as a whisker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(dict.fromkeys(s["dataset"] for s in summaries))
    models = list(dict.fromkeys(s["model"] for s in summaries))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 2 + 1.5 * len(datasets) * len(models)), 4))
    for index, model in enumerate(models):
        rows = {s["dataset"]: s for s in summaries if s["model"] == model and "wer" in s}
        values = [rows[d]["wer"] if d in rows else np.nan for d in datasets]
        # A single recording has no interval: no whisker.
        below = [rows[d]["wer"] - rows[d].get("wer_low", rows[d]["wer"]) if d in rows else 0 for d in datasets]
        above = [rows[d].get("wer_high", rows[d]["wer"]) - rows[d]["wer"] if d in rows else 0 for d in datasets]
        ax.bar(np.arange(len(datasets)) + index * width, values, width, yerr=[below, above], capsize=4,
               label=model)
    ax.set_xticks(np.arange(len(datasets)) + width * (len(models) - 1) / 2)
    ax.set_xticklabels(datasets, fontsize=8)
    ax.set(ylabel="WER % (normalised)", title="WER with 95 % bootstrap intervals")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
