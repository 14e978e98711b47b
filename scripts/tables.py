#!/usr/bin/env python
"""The numbers in README.md and docs/ that come from a run, written from that run's own JSON.

A region of a page

    <!-- table:NAME -->
    (anything: rewritten)
    <!-- /table -->

holds what TABLES[NAME] renders from its JSON file, and nothing else. No result is typed by
hand: rerun the stage or the bench, commit the JSON it wrote, and run this script.

    python scripts/tables.py            rewrite every region of README.md and docs/**/*.md
    python scripts/tables.py --check    rewrite nothing; exit 1 naming each region that differs
                                        from what the committed JSON gives (tests/test_tables.py)

`make results` copies the last `make demo`'s JSON into docs/results/ and runs this (`make tables`).

Adding a table is one entry: a function from the JSON (a dict) to Markdown, registered with

    @table("NAME", "bench/results/thing.json")
    def _thing(results: dict) -> str:
        return markdown_table(["a", "b"], [[row["a"], f"{row['b']:.1f}"] for row in results["rows"]])

then `<!-- table:NAME -->` `<!-- /table -->` where it goes, and `python scripts/tables.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the options tables import the package from this checkout
    sys.path.insert(0, str(ROOT))
PAGES = ("README.md", "docs/**/*.md")  # where regions may be
# Markers stand alone at the start of a line (an indented or inline one, as in an example, is text).
REGION = re.compile(r"^(?P<open><!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)^(?P<close><!-- /table -->)$",
                    re.S | re.M)
OPENING = re.compile(r"^<!-- table:([\w.-]+) -->$", re.M)


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # the JSON file, relative to the repository root
    render: Callable[[dict], str]  # the JSON -> Markdown (no trailing newline needed)


TABLES: dict[str, Table] = {}


def table(name: str, source: str):
    """Decorator: `render(results) -> markdown` fills the regions named `name` from `source`."""

    def register(render: Callable[[dict], str]):
        TABLES[name] = Table(name, source, render)
        return render

    return register


class TableError(Exception):
    """A region this script cannot fill (unknown name, unclosed marker, missing JSON)."""


# --- formatting ------------------------------------------------------------------------------

def markdown_table(header: list[str], rows: Iterable[list], align: str | None = None) -> str:
    """A Markdown table; `align` is one letter per column, l or r (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *([str(cell) for cell in row] for row in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def score(result: dict, name: str, digits: int = 1) -> str:
    """A score with its 95 % bootstrap interval, `45.6 (34.3–58.0)`; a single recording has no
    interval (the bootstrap resamples utterances), so it is the score alone."""
    value = f"{result[name]:.{digits}f}"
    low, high = result.get(f"{name}_low"), result.get(f"{name}_high")
    if result.get("clips", 0) < 2 or low is None or high is None:
        return value
    return f"{value} ({low:.{digits}f}–{high:.{digits}f})"


def source_note(*sources: str, extra: str = "") -> str:
    files = ", ".join(f"`{source}`" for source in sources)
    return f"<small>Written by `python scripts/tables.py` from {files}{extra}.</small>"


def megabytes(count: float) -> str:
    return f"{count / 1e6:,.1f} MB" if count < 1e9 else f"{count / 1e9:,.2f} GB"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- the demo (`make demo`): evaluation through the engine, and training -------------------------

DEMO_EVALUATION = "docs/results/demo-evaluation.json"
DEMO_TRAINING = "docs/results/demo-training.json"
# How the demo's paths read in a table (any other model or dataset is shown as it is named).
MODEL_LABELS = {"artifacts/whisper-base": "Whisper base, untuned", "artifacts/model": "fine-tuned by `make demo`"}
DATASET_LABELS = {"Resources/cv-corpus-sample/gl": "sample corpus, test split",
                  "Resources/examples/long.mp3": "`long.mp3`"}


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, f"`{model}`")


def dataset_label(result: dict, clips: bool = True) -> str:
    name = DATASET_LABELS.get(result["dataset"], f"`{result['dataset']}`")
    if result["clips"] == 1:
        return f"{name} (one recording, {result['audio_hours'] * 3600:.0f} s)"
    return f"{name} ({result['clips']} clips)" if clips else name


def decoding_summary(decoding: dict) -> str:
    beam = "greedy" if decoding["beam_size"] == 1 else f"beam {decoding['beam_size']}"
    fallback = " with the temperature fallback" if len(decoding["temperatures"]) > 1 else ""
    return f"{beam}{fallback}, {decoding['long_form']} long form"


def _decoding_text(decoding: dict | str) -> str:
    """A bench's decoding: the settings it recorded (bench/machine.py), or an older run's words."""
    return decoding if isinstance(decoding, str) else f"the command's defaults ({decoding_summary(decoding)})"


@table("headline", DEMO_EVALUATION)
def _headline(metrics: dict) -> str:
    """README: WER before and after fine-tuning, per test set, through the engine."""
    results = metrics["results"]
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    models = list(dict.fromkeys(r["model"] for r in results))
    by_key = {(r["model"], r["dataset"]): r for r in results}
    first = {d: next(r for r in results if r["dataset"] == d) for d in datasets}
    header = ["model", *(f"WER % on {dataset_label(first[d])}" for d in datasets)]
    rows = [[model_label(m), *(score(by_key[m, d], "wer") if (m, d) in by_key else "–" for d in datasets)]
            for m in models]
    return "\n".join([markdown_table(header, rows), "",
                      source_note(DEMO_EVALUATION, extra=f": the engine's CPU default "
                                  f"({decoding_summary(metrics['decoding'])}); in brackets the 95 % interval")])


@table("demo-evaluation", DEMO_EVALUATION)
def _demo_evaluation(metrics: dict) -> str:
    """Every model on every test set, as report.md has it (without intervals for one recording)."""
    header = ["model", "dataset", "backend", "clips", "hours", "RTF", "WER %", "CER %", "WER ortho %", "CER ortho %"]
    rows = []
    for r in metrics["results"]:
        rtf = f"{r['real_time_factor']:.2f}" if r.get("real_time_factor") is not None else "–"
        scores = [score(r, name) if name in r else "–" for name in ("wer", "cer", "wer_ortho", "cer_ortho")]
        rows.append([model_label(r["model"]), dataset_label(r, clips=False), r["backend"], r["clips"], f"{r['audio_hours']:.3f}",
                     rtf, *scores])
    return "\n".join([markdown_table(header, rows, "lllrrrrrrr"), "",
                      source_note(DEMO_EVALUATION, extra=f" (`metrics.json` of `make demo`'s evaluation; "
                                  f"{decoding_summary(metrics['decoding'])})")])


@table("demo-confusions", DEMO_EVALUATION)
def _demo_confusions(metrics: dict) -> str:
    """The most frequent word confusions per model (normalised words, over every test set)."""
    rows = [[model_label(model), ", ".join(f"{ref} → {hyp} ({count})" for ref, hyp, count in pairs[:6]) or "none"]
            for model, pairs in metrics["confusions"].items()]
    return "\n".join([markdown_table(["model", "reference → hypothesis (times)"], rows, "ll"), "",
                      source_note(DEMO_EVALUATION)])


@table("demo-training", DEMO_TRAINING)
def _demo_training(results: dict) -> str:
    """Test scores before and after fine-tuning, as train.py measures them (greedy, on the features)."""
    selection = results["selection"]
    chosen = f"chosen on {selection['split']} (step {results['best_step']})"
    if selection.get("optimistic"):
        chosen += ", selected and reported on the same split: optimistic"
    rows = [[f"{results['base_model']}, untuned (step 0)", *_scores(results["before"])],
            [f"{results['preset']} fine-tune, {chosen}", *_scores(results["after"])]]
    header = [f"model (test split, {results['test_clips']} clips)", "WER %", "CER %", "WER ortho %", "CER ortho %"]
    return "\n".join([markdown_table(header, rows), "", source_note(DEMO_TRAINING, extra=" (`results.json` of the "
                                                                     "demo's model)")])


def _scores(result: dict) -> list[str]:
    return [score(result, name) for name in ("wer", "cer", "wer_ortho", "cer_ortho")]


@table("demo-training-curve", DEMO_TRAINING)
def _demo_training_curve(results: dict) -> str:
    """Every evaluation on the selection split: how the WER moved with the steps."""
    rows = [[e["step"], "–" if e["train_loss"] is None else f"{e['train_loss']:.3f}", f"{e['eval_loss']:.3f}",
             score(e, "wer"), score(e, "cer"), e["clips"]]
            for e in results["evaluations"]]
    header = ["step", "train loss", "eval loss", "WER %", "CER %", f"{results['selection']['split']} clips"]
    return "\n".join([markdown_table(header, rows), "", source_note(DEMO_TRAINING)])


@table("demo-training-run", DEMO_TRAINING)
def _demo_training_run(results: dict) -> str:
    """What the demo's training was and what it cost."""
    hp, processes, timing = results["hyperparameters"], results["processes"], results["timing"]
    rows = [
        ["preset, base model", f"`{results['preset']}`, `{results['base_model']}`"],
        ["clips", f"{results['train_clips']} train, {results['selection']['clips']} {results['selection']['split']}, "
                  f"{results['test_clips']} test"],
        ["steps × global batch", f"{hp['max_steps']} × {processes['global_batch']} "
                                 f"({processes['epochs']:.2f} epochs), learning rate {hp['learning_rate']:g}"],
        ["processes, device, precision", f"{processes['world_size']}, {processes['device']}, {hp['precision']}"],
        ["seed", hp["seed"]],
        ["seconds per step", f"{timing['seconds_per_step']:.1f}"],
        ["evaluations (test twice, validation each eval step)", duration(timing["evaluation_seconds"])],
        ["whole run", duration(timing["total_seconds"])],
    ]
    return "\n".join([markdown_table(["", "the demo's training run"], rows, "ll"), "", source_note(DEMO_TRAINING)])


# --- bench/bench_features.py -----------------------------------------------------------------------

FEATURES_BENCH = "bench/results/features.json"


def machine_note(results: dict) -> str:
    machine = results["machine"]
    load = f", load average {machine['load_average']:.1f} at the start" if machine.get("load_average") else ""
    return f"{machine['cpu']}, {machine['cores']} cores{load}; {results['date']}"


@table("features-bench", FEATURES_BENCH)
def _features_bench(results: dict) -> str:
    header = ["way", "clips", "seconds", "clips/s", "bytes/clip", "speed ×", "smaller ×"]
    rows = [[w["way"], w["clips"], f"{w['seconds']:.1f}", f"{w['clips/s']:.1f}", f"{w['bytes/clip']:,.0f}",
             f"{w['speed x']:.1f}", f"{w['smaller x']:.1f}"] for w in results["ways"]]
    decoders = markdown_table(["decoder", "ms/clip"], [[d["decoder"], f"{d['ms/clip']:.1f}"]
                                                       for d in results["decoders"]])
    return "\n".join([markdown_table(header, rows), "", "and `load_audio`'s two decoders on the same mp3s:", "",
                      decoders, "", source_note(FEATURES_BENCH, extra=f": {results['clips']} clips, "
                                                f"{results['audio_seconds'] / 60:.1f} min of audio; "
                                                f"{machine_note(results)}")])


@table("features-per-hour", FEATURES_BENCH)
def _features_per_hour(results: dict) -> str:
    """What the feature stage costs per hour of audio, and for corpora of a few sizes."""
    ours = next(w for w in results["ways"] if w["way"].startswith("ours"))
    seed = results["ways"][0]
    rows = [[f"{hours:,} h of audio", duration(ours["seconds/audio hour"] * hours),
             megabytes(ours["bytes/audio hour"] * hours), megabytes(seed["bytes/audio hour"] * hours)]
            for hours in (1, 10, 100, 1000)]
    header = ["corpus", "feature time (this CPU, 1 process)", "features on disk", "the seed's 30 s fp32 features"]
    measured = (f"Measured: {ours['clips/s']:.1f} clips/s, {ours['seconds/audio hour']:.0f} s per hour of audio, "
                f"{megabytes(ours['bytes/audio hour'])} of features per hour of audio.")
    return "\n".join([measured, "", markdown_table(header, rows), "",
                      source_note(FEATURES_BENCH, extra=f": measured on {results['audio_seconds'] / 60:.1f} min of "
                                  f"the sample corpus ({machine_note(results)}), scaled linearly")])


# --- bench/model_sizes.py -------------------------------------------------------------------------

MODEL_SIZES = "bench/results/model_sizes.json"


@table("model-sizes", MODEL_SIZES)
def _model_sizes(results: dict) -> str:
    rows = [[f"`{m['preset']}`" if m.get("preset") else "–", m["model"], f"{m['parameters'] / 1e6:,.1f} M",
             megabytes(m["checkpoint_bytes"]), megabytes(m["ctranslate2_int8_bytes"]),
             megabytes(m["trainer_checkpoint_bytes"]), megabytes(m["training_state_bytes"])]
            for m in results["models"]]
    header = ["preset", "model", "parameters", "checkpoint (fp32)", "CTranslate2 int8 export",
              "one training checkpoint", "weights + gradients + AdamW"]
    return "\n".join([markdown_table(header, rows, "llrrrrr"), "", source_note(MODEL_SIZES, extra=
                      f": {results['method']}")])


# --- bench/bench_transcribe.py ---------------------------------------------------------------------

TRANSCRIBE_BENCH = "bench/results/transcribe.json"


def transcribe_label(row: dict, results: dict) -> str:
    """A contender's name; the engine's default (its settings are DecodingOptions()'s) in bold, the
    old default marked."""
    default = row["settings"] == results["default_decoding"]
    marks = [mark for mark, applies in (("the old default", row["contender"] == results.get("old_default_contender")),
                                        ("the default", default and row["contender"] != "ours default"))
             if applies]
    marks = ["the default, as before"] if len(marks) == 2 else marks
    name = row["contender"] + (f" ({', '.join(marks)})" if marks else "")
    return f"**{name}**" if default else name


def transcribe_summary(results: dict) -> str:
    """One line per recording: the default against faster-whisper's batched greedy (speed, WER and
    where the CPU time differs), and our fastest decoding beside it."""
    lines = []
    for recording in dict.fromkeys(row["recording"] for row in results["results"]):
        rows = {row["contender"]: row for row in results["results"] if row["recording"] == recording}
        default = next(row for row in rows.values() if row["settings"] == results["default_decoding"])
        peer = rows[results["reference_contender"]]
        fastest = min((row for row in rows.values() if row["contender"].startswith("ours")),
                      key=lambda row: row["cpu_ratio"])
        cpu = lambda row, phase: row["profile"]["cpu_s"][phase]  # noqa: E731
        lines.append(
            f"- {recording}: the default takes {default['ratio']:.2f}× faster-whisper batched greedy's wall time "
            f"({default['cpu_ratio']:.2f}× its CPU time) at WER {default['wer']:.1f} against {peer['wer']:.1f}; "
            f"encoder {cpu(default, 'encoder'):.1f} CPU-s ({default['profile']['encoder_windows']} windows) against "
            f"{cpu(peer, 'encoder'):.1f} ({peer['profile']['encoder_windows']}), decoder {cpu(default, 'decoder'):.1f} "
            f"against {cpu(peer, 'decoder'):.1f}. Our fastest, {fastest['contender']}: {fastest['ratio']:.2f}× wall, "
            f"{fastest['cpu_ratio']:.2f}× CPU, WER {fastest['wer']:.1f}.")
    return "\n".join(lines)


@table("transcribe", TRANSCRIBE_BENCH)
def _transcribe(results: dict) -> str:
    """Per recording: speed against faster-whisper's batched greedy, WER against the old default's,
    then where each contender's time went (the run of median wall time)."""
    parts, reference = [], results["reference_contender"]
    for recording in dict.fromkeys(row["recording"] for row in results["results"]):
        rows = [row for row in results["results"] if row["recording"] == recording]
        first = rows[0]
        delta = lambda row: "–" if "wer_delta_vs_old_default" not in row else (  # noqa: E731
            "{delta:+.1f} ({low:+.1f} to {high:+.1f})".format(**row["wer_delta_vs_old_default"]))
        speed = [[transcribe_label(row, results), f"{row['wall_s']:.1f}", f"{row['ratio']:.2f}×",
                  f"{row['cpu_ratio']:.2f}×", f"{row['wer']:.1f}", delta(row), f"{row['words_ratio']:.2f}",
                  "yes" if row["loops"] else "no"] for row in rows]
        profile = [[transcribe_label(row, results), row["profile"]["encoder_windows"]]
                   + [f"{row['profile']['cpu_s'][phase]:.1f}" for phase in ("encoder", "decoder")]
                   + [f"{row['profile']['cpu_s']['vad'] + row['profile']['cpu_s']['features']:.1f}",
                      f"{row['profile']['cpu_s']['other']:.1f}", f"{row['cpu_s']:.1f}"] for row in rows]
        parts += [f"**{recording}** ({first['duration_s']:.1f} s; medians of {first['runs']} runs)", "",
                  markdown_table(["contender", "wall s", f"wall / {reference}", "CPU / same",
                                  "WER %", "WER − old default (95 % CI)", "words out / read", "loops"], speed), "",
                  f"Where the CPU time went on {recording} (seconds, both cores counted):", "",
                  markdown_table(["contender", "encoder windows", "encoder", "decoder", "VAD + log-mel", "other",
                                  "total"], profile), ""]
    parts += [transcribe_summary(results), ""]
    machine = results["machine"]
    loads = f"load average {machine['load_average_start'][0]:.1f} at the start, {machine['load_average_end'][0]:.1f} " \
            "at the end"
    parts.append(source_note(TRANSCRIBE_BENCH, extra=f": model `{results['model']}`, {results['rounds']} rounds; "
                             f"{machine['cpu']}, {machine['cpus']} cores, {machine['ctranslate2_threads']} CTranslate2 "
                             f"threads, {loads}; faster-whisper {machine['faster_whisper']}, CTranslate2 "
                             f"{machine['ctranslate2']}; {results['created'][:10]}"))
    return "\n".join(parts)


@table("cluster", "bench/results/cluster.json")
def _cluster(results: dict) -> str:
    """The Ray sizing table (bench/bench_cluster.py)."""
    rows, base, every = results["rows"], results["rows"][0], [row for runs in results["all_rounds"] for row in runs]
    rounds = f", each pool's fastest of {results['rounds']} rounds" if results["rounds"] > 1 else ""
    lines = [f"Measured by `bench/bench_cluster.py` on {results['date']}: {results['clips']} clips of the sample "
             f"corpus ({base['audio_seconds']:.0f} s of audio), model `{results['model']}` (CTranslate2 int8), "
             f"{_decoding_text(results['decoding'])}, Ray {results['ray']}, one node with {results['cpus']} CPUs ({results['cpu']})"
             f"{rounds}. The machine was shared with other jobs: load average "
             f"{min(row['load_before'] for row in every):.1f} to {max(row['load_after'] for row in every):.1f} "
             f"during the run, on {results['cpus']} cores.",
             "",
             "| pool (actors x CPUs) | files / s | files / hour | audio h / hour | audio h per CPU hour | "
             f"vs {base['actors']} x {base['cpus_per_actor']:g} CPU | first file after | peak MB per actor |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['actors']} x {row['cpus_per_actor']:g} CPU | {row['files_per_second']:.2f} | "
            f"{row['files_per_second'] * 3600:.0f} | {row['audio_hours_per_hour']:.2f} | "
            f"{row['audio_hours_per_cpu_hour']:.2f} | {row['files_per_second'] / base['files_per_second']:.2f}x | "
            f"{row['first_file_seconds']:.0f} s | {max(row['actor_peak_mb'], default=0):.0f} |")
    lines.append("| 1 x 1 GPU, batched decoding | not measured (no GPU lent) | | | | | | |")
    return "\n".join(lines) + "\n"


# --- the engine: the no-speech guard, and stream=true over the API ---------------------------------

NO_SPEECH = "bench/results/no_speech.json"
STREAM = "bench/results/stream.json"
MODEL_NAMES = {"model": "fine-tuned demo", "whisper-base": "Whisper base, untuned"}


@table("no-speech", NO_SPEECH)
def _no_speech(results: dict) -> str:
    """The guard before and after (two labelled runs): noise clips that gave text, noisy speech lost."""
    runs = results["runs"]
    key = lambda row: (row["model"], row["setting"], row["gate"])  # noqa: E731
    before = {key(row): row for row in runs.get("before", [])}
    rows = []
    for row in runs["after"]:
        old = before.get(key(row))
        def count(name: str, total: str) -> str:
            now = f"{row[name]}/{row[total]}"
            return f"{old[name]}/{old[total]} → **{now}**" if old else now
        way = "the engine as it is" if row["gate"] == "gate" else "the VAD gate fooled (hears speech everywhere)"
        rows.append([MODEL_NAMES.get(row["model"], row["model"]), row["setting"], way,
                     count("false_text", "noise_clips"), count("lost_speech", "speech_clips"),
                     f"{old['cer']:.1f} → {row['cer']:.1f}" if old else f"{row['cer']:.1f}"])
    header = ["model", "decoding", "way", "noise clips that gave text", "noisy speech lost", "CER % (noisy speech)"]
    machine = results["machines"]["after"]
    return "\n".join([markdown_table(header, rows, "lllrrr"), "",
                      source_note(NO_SPEECH, extra=f": before (the engine without the guard) and after; "
                                  f"{machine['cpu']}, {machine['cores']} cores; noise clips of "
                                  f"{machine['noise_seconds']:g} s plus the 20 s white noise that passed the gate")])


@table("stream", STREAM)
def _stream(results: dict) -> str:
    """stream=true against the plain request on the same upload, medians over the rounds, per
    long-form mode."""
    rows = [[decoding_summary(run["decoding"]), MODEL_NAMES.get(run["model"], run["model"]), run["backend"],
             f"{run['plain_seconds']:.1f} s", f"{run['stream_seconds']:.1f} s", f"{run['ratio']:.2f}×",
             f"{run['first_delta']:.1f} s", "yes" if run["same_text"] else "**no**"] for run in results["runs"]]
    header = ["decoding", "model", "backend", "plain", "stream=true", "ratio", "first delta", "same text"]
    return "\n".join([markdown_table(header, rows, "llllrrrl"), "",
                      source_note(STREAM, extra=f": `{results['audio']}` uploaded, medians of {results['rounds']} "
                                  f"requests of each kind; {machine_note(results)}")])


# --- live captions: bench/bench_live.py ---------------------------------------------------------------

LIVE = "bench/results/live.json"
LIVE_VARIANTS = "bench/results/live_variants.json"
LIVE_LAG_TARGET = 2.5  # seconds: the median confirmed word shown at most this late (the live captions' goal)
LIVE_WER_TARGET = 3.0  # WER points: the confirmed live text at most this much worse than offline


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def live_options_summary(live: dict) -> str:
    beam = "greedy" if live["beam_size"] == 1 else f"beam {live['beam_size']}"
    return (f"step {live['step_seconds']:g} s, {live['window_seconds']:g} s window, trim {live['trim_seconds']:g} s, "
            f"{beam} at the first temperature, {'prompt' if live['prompt'] else 'no prompt'}, "
            f"{'paced' if live['paced'] else 'not paced'}")


def highest_load(results: dict) -> float | None:
    """The highest load average after a row (the start's is the machine's): above the cores, jobs waited."""
    return max((row["load_after"] for row in results["rows"] if row.get("load_after") is not None), default=None)


def peak_load(results: dict) -> str:
    peak = highest_load(results)
    return "" if peak is None else f"; load average up to {peak:.1f} during the run"


def live_note(results: dict, source: str) -> str:
    return source_note(source, extra=f": {live_options_summary(results['live'])}; chunks of "
                       f"{results['chunk_seconds']:g} s; offline and finish() with the engine's "
                       f"{decoding_summary(results['decoding'])}; {machine_note(results)}{peak_load(results)}")


@table("live", LIVE)
def _live(results: dict) -> str:
    """Per model and recording: how late the confirmed words came, and the live, finish() and offline WER."""
    rows = [[model_label(r["model"]), f"`{r['input']}`", r["backend"], f"{r['audio_seconds']:.1f}",
             f"{r['matched']}/{r['confirmed']}", _number(r["median_lag"], 2), _number(r["p90_lag"], 2),
             _number(r["first_word"], 1), f"{r['wer_live']:.1f}", f"{r['wer_finish']:.1f}", f"{r['wer_offline']:.1f}",
             f"{r['decode_per_second']:.2f}", f"{r['max_buffered']:.1f}"]
            for r in results["rows"]]
    header = ["model", "input", "backend", "audio s", "matched / confirmed words", "median lag s", "p90 lag s",
              "first word s", "WER live %", "WER finish() %", "WER offline %", "decode s / audio s", "max buffer s"]
    return "\n".join([markdown_table(header, rows, "lll" + "r" * 10), "", live_note(results, LIVE)])


@table("live-findings", LIVE)
def _live_findings(results: dict) -> str:
    """What the table says, per model on the longest recording, against the live captions' two targets."""
    longest = max(row["audio_seconds"] for row in results["rows"])
    lines = []
    for r in (row for row in results["rows"] if row["audio_seconds"] == longest):
        gap = r["wer_live"] - r["wer_offline"]
        lag_met = r["median_lag"] is not None and r["median_lag"] <= LIVE_LAG_TARGET
        lines.append(
            f"- {model_label(r['model'])}, `{r['input']}` ({r['audio_seconds']:.0f} s): the median confirmed word "
            f"is shown {_number(r['median_lag'], 2)} s after it was spoken (p90 {_number(r['p90_lag'], 2)} s; "
            f"target ≤ {LIVE_LAG_TARGET:g} s: {'met' if lag_met else '**not met**'}, over {r['matched']} matched "
            f"words); live WER {r['wer_live']:.1f} % against {r['wer_offline']:.1f} % offline "
            f"({gap:+.1f} points; target within {LIVE_WER_TARGET:g}: "
            f"{'met' if gap <= LIVE_WER_TARGET else '**not met**'}); the buffer peaked at {r['max_buffered']:.1f} s; "
            f"decoding took {r['decode_per_second']:.2f} s per second of audio.")
    machine = results["machine"]
    peak = highest_load(results)
    if peak is not None and peak > machine["cores"]:
        lines.append(f"- The run shared the machine with other jobs: load average {machine['load_average']:.1f} at "
                     f"the start, up to {peak:.1f} during the run, on {machine['cores']} cores. The decode times, "
                     "and so the lags, are those of a busy CPU.")
    return "\n".join([*lines, "", source_note(LIVE)])


@table("live-variants", LIVE_VARIANTS)
def _live_variants(results: dict) -> str:
    """The same model and recording under variants of LiveOptions (bench_live.py --variant)."""
    rows = [[r["variant"], live_options_summary(r["live"]), _number(r["median_lag"], 2), _number(r["p90_lag"], 2),
             f"{r['wer_live']:.1f}", f"{r['decode_per_second']:.2f}", _number(r.get("load_after"), 1)]
            for r in results["rows"]]
    first = results["rows"][0]
    # The rows run one after the other: on a shared machine the load (and so the lag) can differ between them.
    header = ["variant", "live decodes", "median lag s", "p90 lag s", "WER live %", "decode s / audio s",
              "load average after"]
    where = (f"{model_label(first['model'])}, `{first['input']}` ({first['audio_seconds']:.0f} s), {first['backend']}; "
             f"offline WER {first['wer_offline']:.1f} %")
    return "\n".join([markdown_table(header, rows, "llrrrrr"), "",
                      source_note(LIVE_VARIANTS, extra=f": {where}; one run each, in this order; "
                                  f"{machine_note(results)}{peak_load(results)}")])


# --- short windows: bench/bench_window.py ------------------------------------------------------------

WINDOW = "bench/results/window.json"


@table("window-speed", WINDOW)
def _window_speed(results: dict) -> str:
    """Training steps at the 30 s window against the short one, the same clips and checkpoint, one run."""
    rows = [[f"{r['window_seconds']} s", r["encoder_positions"], f"{r['seconds_per_step']:.2f}",
             f"{r['samples_per_second']:.2f}", f"{r['speed_up']:.2f}×",
             " / ".join(f"{rate:.2f}" for rate in r["rounds_samples_per_second"])]
            for r in results["rows"]]
    header = ["window", "encoder positions", "s/step", "samples/s", "speed-up", "samples/s per round"]
    load = results["machine"].get("load_average")
    how = (f": `{results['model']}`, {results['clips']} training clips, batch {results['batch_size']}, "
           f"{results['precision']}, {results['device']}; the windows take turns, {results['rounds']} rounds × "
           f"(1 warm-up + {results['steps']} timed steps); {machine_note(results)}"
           + (f"; load average {results['load_after']:.1f} at the end" if load is not None and "load_after" in results
              else ""))
    return "\n".join([markdown_table(header, rows), "", source_note(WINDOW, extra=how)])


# --- a verb's flags, as `whisper-gl VERB --help` gives them -----------------------------------------

# `<!-- table:options.transcribe -->`, `<!-- table:options.app.file -->`: the verb's flags (no JSON:
# the config dataclasses are the source, as for --help).
OPTIONS_PREFIX = "options."
# Defaults under the user's cache or inside the package read the same on every machine.
HOME_PLACEHOLDER = "/WHISPER_GL_HOME"


@contextlib.contextmanager
def documented_environment():
    """No WHISPER_GL_* variable of this shell leaks into a documented default; the home is named."""
    saved = dict(os.environ)
    for key in [key for key in os.environ if key.startswith("WHISPER_GL_") or key == "XDG_CACHE_HOME"]:
        del os.environ[key]
    os.environ["WHISPER_GL_HOME"] = HOME_PLACEHOLDER
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _markdown_cell(text: str) -> str:
    """Help text as one table cell: a pipe would end the cell, <model> would be read as HTML."""
    return text.replace("%%", "%").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def options_table(name: str) -> str:
    import whisper_gl
    from whisper_gl.cli import described_flags, find_verb

    path = name[len(OPTIONS_PREFIX):].split(".")
    try:
        verb = find_verb(*path)
    except KeyError:
        raise TableError(f"'{name}': no verb `whisper-gl {' '.join(path)}`") from None
    with documented_environment():
        flags = described_flags(verb.config)
    package = str(Path(whisper_gl.__file__).parent)

    def default(flag) -> str:
        if flag.required:
            return "(required)"
        shown = flag.default.replace(HOME_PLACEHOLDER, "$WHISPER_GL_HOME").replace(package, "whisper_gl")
        return f"`{shown}`" if shown else ""

    rows = [[f"`{flag.name}`", default(flag), _markdown_cell(flag.help)] for flag in flags]
    return "\n".join([markdown_table(["flag", "default", "meaning"], rows, "lll"), "",
                      f"<small>Written by `python scripts/tables.py` from `whisper-gl {' '.join(path)} --help` "
                      f"(the config dataclass's fields).</small>"])


# --- the generator --------------------------------------------------------------------------------

def page_paths(root: Path = ROOT) -> list[Path]:
    return sorted({path for pattern in PAGES for path in root.glob(pattern) if path.is_file()})


def load_json(source: str, root: Path = ROOT) -> dict:
    path = root / source
    if not path.is_file():
        raise TableError(f"{source} is missing: run the stage or bench that writes it")
    return json.loads(path.read_text(encoding="utf-8"))


def render(name: str, root: Path = ROOT) -> str:
    if name.startswith(OPTIONS_PREFIX):
        return options_table(name)
    if name not in TABLES:
        raise TableError(f"unknown table '{name}': registered are {', '.join(TABLES)}")
    entry = TABLES[name]
    return entry.render(load_json(entry.source, root)).strip("\n")


def rewrite(text: str, where: str = "", root: Path = ROOT) -> str:
    """The page with every region filled from its JSON."""
    regions = list(REGION.finditer(text))
    if len(regions) != len(OPENING.findall(text)):
        raise TableError(f"{where}: a '<!-- table:NAME -->' without its '<!-- /table -->'")

    def fill(match: re.Match) -> str:
        return f"{match['open']}\n{render(match['name'], root)}\n\n{match['close']}"

    return REGION.sub(fill, text)


def stale_regions(root: Path = ROOT) -> list[str]:
    """'page: table' for every region whose committed text is not what the JSON gives."""
    stale = []
    for path in page_paths(root):
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(root))
        fresh = rewrite(text, where, root)
        fresh_bodies = [m["body"] for m in REGION.finditer(fresh)]  # the same regions, in the same order
        stale += [f"{where}: {m['name']}" for m, body in zip(REGION.finditer(text), fresh_bodies) if m["body"] != body]
    return stale


def regions_used(root: Path = ROOT) -> dict[str, list[str]]:
    """Table name -> the pages that hold it."""
    used: dict[str, list[str]] = {}
    for path in page_paths(root):
        for match in REGION.finditer(path.read_text(encoding="utf-8")):
            used.setdefault(match["name"], []).append(str(path.relative_to(root)))
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a region is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_regions()
            for region in stale:
                print(f"stale: {region} (run: python scripts/tables.py)", file=sys.stderr)
            return 1 if stale else 0
        for path in page_paths():
            text = path.read_text(encoding="utf-8")
            fresh = rewrite(text, str(path.relative_to(ROOT)))
            if fresh != text:
                path.write_text(fresh, encoding="utf-8")
                print(f"rewrote {path.relative_to(ROOT)}")
    except TableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
