"""Transcription speed and accuracy: our engine's decodings against faster-whisper's pipelines.

    .venv/bin/python bench/bench_transcribe.py [--model DIR] [--rounds 3] [--recordings long test-split]
        [--add 'fw batched beam 5' ...] [--try 'NAME:long_form=batched,beam_size=2' ...] [--json FILE]

Same model (its CTranslate2 int8 export for every row), same CTranslate2 threads (its default:
min(4, CPUs)), same recordings (bench/recordings.py: long.mp3, and a recording built from the
sample corpus's test clips only), one process. Every contender is loaded and warmed up first
(3 s of audio); then each round runs every contender on each recording in turn, the order
rotated each round, so a shared machine's load falls on all of them alike; each row reports its
median over the rounds.

Rows (the default set):
  ours default             Transcriber(model): whatever DecodingOptions() says; left out while that
                           is the old default's setting (the same decode twice)
  ours sequential beam 5   the old default: Whisper's long-form decoding window after window, beam 5,
                           the model's timestamps, temperature fallback 0-1, token budget, loop collapse
  ours batched beam 3      --long-form batched (timestamps auto = aligned): the speech packed into
                           chunks of at most 30 s without its pauses, decoded as text with beam 3,
                           cut into sentences timed by their aligned words; the same guards per chunk
  ours batched greedy      the same with beam 1
  fw sequential            faster-whisper WhisperModel.transcribe(audio, language): its defaults
                           (beam 5, fallback, conditioned on the previous window)
  fw batched greedy b8     BatchedInferencePipeline.transcribe(audio, language, batch_size=8,
                           beam_size=1): the fastest peer, the reference of the ratio columns
More with --add: fw batched beam 5, fw greedy (beam 1, no fallback), ours batched + words,
ours batched beam 5 + model timestamps (chunks with their pauses, the model's timestamps inside),
seed pipeline (transformers pipeline(...)(path, return_timestamps=True), the seed's call);
and any setting of our engine with --try 'NAME:field=value,...' (DecodingOptions fields;
temperatures as 0+0.4+0.8).

Columns: median wall time, wall time over fw batched greedy's on the same recording, the same
for this process's CPU time (steadier than wall time when other jobs share the machine),
normalised WER and its difference from the old default's with a 95 % interval (a paired
bootstrap over the reference's sentences: each edit is charged to the sentence it falls in),
words out per word read (a loop inflates it), loops, the segments' median and longest length
(subtitle cues); then where the time of the run of median wall time went: Silero VAD, log-mel
features, encoder and decoder (CTranslate2 generate, language detection and word alignment)
seconds, wall and CPU; "other" is the rest (Python around them). The results go to --json
(default bench/results/transcribe.json): one entry per recording and contender, plus the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()  # every row alike: idle OpenMP threads sleep (before torch loads)

import numpy as np  # noqa: E402

from bench.machine import cpu_name  # noqa: E402
from recordings import RECORDINGS  # noqa: E402
from whisper_gl.audio import load_audio  # noqa: E402
from whisper_gl.backends import ctranslate2_export  # noqa: E402
from whisper_gl.config import DecodingOptions  # noqa: E402
from whisper_gl.metrics import bootstrap_interval, compute_metrics, normalize  # noqa: E402
from whisper_gl.models import resolve_model  # noqa: E402
from whisper_gl.transcribe import Transcriber, default_model, is_degenerate  # noqa: E402
from whisper_gl.window import SAMPLING_RATE  # noqa: E402

REFERENCE_ROW = "fw batched greedy b8"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "transcribe.json"
PHASES = ("vad", "features", "encoder", "decoder")


class Output(NamedTuple):
    text: str
    spans: list[tuple[float, float]]  # each segment's (start, end), seconds


Transcribe = Callable[[np.ndarray], Output]


# --- where the time goes -------------------------------------------------------------------

class Clock:
    """Wall and CPU seconds (this process's: CTranslate2's threads included) spent in each
    phase since the last reset, and the windows the encoder was given."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.wall = dict.fromkeys(PHASES, 0.0)
        self.cpu = dict.fromkeys(PHASES, 0.0)
        self.windows = 0

    def timed(self, phase: str, function: Callable) -> Callable:
        def call(*args, **kwargs):
            began, cpu = time.perf_counter(), time.process_time()
            if phase == "encoder":  # a batch of log-mels, or one (faster-whisper's sequential decoder)
                self.windows += len(args[0]) if args[0].ndim == 3 else 1
            try:
                return function(*args, **kwargs)
            finally:
                self.wall[phase] += time.perf_counter() - began
                self.cpu[phase] += time.process_time() - cpu
        return call


CLOCK = Clock()


class _TimedDecoder:
    """ctranslate2.models.Whisper with generate (and the language detection and word alignment
    that also run the decoder) timed; everything else passed through."""

    def __init__(self, model):
        self._model = model
        for name in ("generate", "detect_language", "align"):
            setattr(self, name, CLOCK.timed("decoder", getattr(model, name)))

    def __getattr__(self, name):
        return getattr(self._model, name)


class _TimedFeatures:
    def __init__(self, extractor):
        self._extractor = extractor
        self._call = CLOCK.timed("features", extractor.__call__)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._extractor, name)


def instrument(whisper_model) -> None:
    """Time the encoder, decoder and log-mel of a faster_whisper.WhisperModel (ours or the peer's)."""
    whisper_model.encode = CLOCK.timed("encoder", whisper_model.encode)
    whisper_model.model = _TimedDecoder(whisper_model.model)
    whisper_model.feature_extractor = _TimedFeatures(whisper_model.feature_extractor)


def instrument_vad() -> None:
    """Time Silero VAD wherever it is called from (our engine and faster-whisper's pipelines)."""
    import faster_whisper.transcribe
    import faster_whisper.vad

    timed = CLOCK.timed("vad", faster_whisper.vad.get_speech_timestamps)
    faster_whisper.vad.get_speech_timestamps = timed
    faster_whisper.transcribe.get_speech_timestamps = timed


# --- the contenders ------------------------------------------------------------------------

# Our engine's rows, each spelled out in full so that a row means the same whatever the default.
OLD_DEFAULT_ROW = "ours sequential beam 5"
OLD_DEFAULT = dict(long_form="sequential", beam_size=5, temperatures=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                   timestamps="auto", batch_size=8)
OURS = {
    "ours default": {},  # left out while the default is the old default (the same decode twice)
    OLD_DEFAULT_ROW: OLD_DEFAULT,
    "ours batched beam 3": {**OLD_DEFAULT, "long_form": "batched", "timestamps": "aligned", "beam_size": 3},
    "ours batched greedy": {**OLD_DEFAULT, "long_form": "batched", "timestamps": "aligned", "beam_size": 1},
}
OPTIONAL_OURS = {
    "ours batched + words": {"long_form": "batched", "word_timestamps": True},
    "ours batched beam 5 + model timestamps": {**OLD_DEFAULT, "long_form": "batched", "timestamps": "model"},
}


def ours(folder: Path, **settings) -> Transcribe:
    engine = Transcriber(folder, backend="ctranslate2", **settings)
    instrument(engine._backend.model)

    def run(audio):
        result = engine.transcribe(audio)
        return Output(result.text, [(s.start, s.end) for s in result.segments])
    return run


def faster_whisper(export: Path, batched: bool = False, **settings) -> Transcribe:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(str(export), device="cpu", compute_type="int8")
    instrument(model)
    if batched:
        pipeline = BatchedInferencePipeline(model)
        transcribe = lambda audio: pipeline.transcribe(audio, language="gl", batch_size=8, **settings)[0]  # noqa: E731
    else:
        transcribe = lambda audio: model.transcribe(audio, language="gl", **settings)[0]  # noqa: E731

    def run(audio):
        segments = list(transcribe(audio))
        return Output(" ".join(s.text.strip() for s in segments), [(s.start, s.end) for s in segments])
    return run


def seed_pipeline(folder: Path) -> Transcribe:
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    generate = {"language": "gl", "task": "transcribe"}

    def run(audio):
        result = asr(audio.copy(), generate_kwargs=generate, return_timestamps=True)
        return Output(result["text"], [tuple(chunk["timestamp"]) for chunk in result.get("chunks", [])])
    return run


def contenders(folder: Path, added: list[str], tried: dict[str, dict]) -> dict[str, Callable[[], Transcribe]]:
    export = ctranslate2_export(folder)
    rows = {name: (lambda s=settings: ours(folder, **s)) for name, settings in OURS.items()
            if not (name == "ours default" and DecodingOptions() == DecodingOptions(**OLD_DEFAULT))}
    rows["fw sequential"] = lambda: faster_whisper(export)
    rows[REFERENCE_ROW] = lambda: faster_whisper(export, batched=True, beam_size=1)
    optional = {
        "fw batched beam 5": lambda: faster_whisper(export, batched=True, beam_size=5),
        "fw greedy": lambda: faster_whisper(export, beam_size=1, temperature=0.0),
        "seed pipeline": lambda: seed_pipeline(folder),
        **{name: (lambda s=settings: ours(folder, **s)) for name, settings in OPTIONAL_OURS.items()},
    }
    for name in added:
        if name not in optional:
            raise SystemExit(f"--add {name!r}: choose among {', '.join(optional)}")
        rows[name] = optional[name]
    for name, settings in tried.items():
        rows[name] = lambda s=settings: ours(folder, **s)
    return rows


def parse_try(spec: str) -> tuple[str, dict]:
    """'NAME:long_form=batched,beam_size=3,temperatures=0+0.4' -> (NAME, settings)."""
    name, _, body = spec.partition(":")
    fields = {f.name: f for f in dataclasses.fields(DecodingOptions)}
    settings = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--try {spec!r}: unknown setting {key!r}")
        default = fields[key].default
        if key == "temperatures":
            settings[key] = tuple(float(t) for t in value.split("+"))
        elif isinstance(default, bool):
            settings[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            settings[key] = int(value)
        else:
            settings[key] = value
    return name, settings


# --- measuring -----------------------------------------------------------------------------

def machine() -> dict:
    import ctranslate2
    import faster_whisper

    return dict(cpu=cpu_name(), cpus=len(os.sched_getaffinity(0)),
                ctranslate2_threads=min(4, len(os.sched_getaffinity(0))),  # its default, every row alike
                python=platform.python_version(), ctranslate2=ctranslate2.__version__,
                faster_whisper=faster_whisper.__version__, load_average_start=list(os.getloadavg()))


def segment_lengths(spans: list[tuple[float, float]]) -> tuple[float, float]:
    lengths = [end - start for start, end in spans if start is not None and end is not None] or [0.0]
    return statistics.median(lengths), max(lengths)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model(), help="model folder or Hub id (default: %(default)s)")
    parser.add_argument("--recordings", nargs="+", default=list(RECORDINGS), choices=list(RECORDINGS),
                        help="recordings to transcribe (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of every contender (default: %(default)s)")
    parser.add_argument("--add", nargs="*", default=[], help="optional rows, e.g. 'fw batched beam 5'")
    parser.add_argument("--try", dest="tried", nargs="*", default=[],
                        help="more rows of our engine: 'NAME:field=value,...' (DecodingOptions fields)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these rows (the reference and the --try rows are always run)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default: %(default)s)")
    args = parser.parse_args(argv)

    folder = resolve_model(args.model)
    if ctranslate2_export(folder) is None:
        raise SystemExit(f"no CTranslate2 export in {folder}: run `whisper-gl export --model {args.model}`")
    recordings = [RECORDINGS[name]() for name in args.recordings]
    audios = {rec.name: load_audio(rec.audio) for rec in recordings}  # decoded once: every row gets the same samples
    references = {rec.name: rec.text() for rec in recordings}
    info = machine()
    print(f"model {args.model}, {info['cpus']} CPUs ({info['cpu']}), {info['ctranslate2_threads']} CTranslate2 threads, "
          f"{args.rounds} rounds, load {' '.join(f'{x:.1f}' for x in info['load_average_start'])}")
    for rec in recordings:
        print(f"  {rec.name}: {rec.audio} ({len(audios[rec.name]) / SAMPLING_RATE:.1f} s, "
              f"{len(references[rec.name].split())} words read)")

    instrument_vad()
    tried = dict(parse_try(spec) for spec in args.tried)
    builders = contenders(folder, args.add, tried)
    if args.only is not None:  # the reference and the --try rows always run
        builders = {name: build for name, build in builders.items()
                    if name in args.only or name == REFERENCE_ROW or name in tried}
    loaded: dict[str, Transcribe] = {}
    for name, build in builders.items():
        loaded[name] = build()
        loaded[name](audios[recordings[0].name][: 3 * SAMPLING_RATE])  # warm-up
    names = list(loaded)
    runs: dict[tuple[str, str], list[dict]] = {(rec.name, name): [] for rec in recordings for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for rec in recordings:
            for name in names[shift:] + names[:shift]:
                CLOCK.reset()
                began, cpu = time.perf_counter(), time.process_time()
                output = loaded[name](audios[rec.name])
                wall = time.perf_counter() - began
                runs[rec.name, name].append(dict(
                    wall=wall, cpu=time.process_time() - cpu, output=output,
                    wer=compute_metrics([output.text], [references[rec.name]])["wer"],
                    profile=_profile(wall, time.process_time() - cpu, CLOCK)))
                print(f"  round {round_index + 1}, {rec.name}: {name}: {wall:.1f} s, "
                      f"WER {runs[rec.name, name][-1]['wer']:.1f}", flush=True)
    info["load_average_end"] = list(os.getloadavg())

    results = []
    for rec in recordings:
        reference, duration = references[rec.name], len(audios[rec.name]) / SAMPLING_RATE
        base = {key: statistics.median(run[key] for run in runs[rec.name, REFERENCE_ROW]) for key in ("wall", "cpu")}
        rows = [_result(rec.name, name, runs[rec.name, name], base, reference, duration, args.tried) for name in names]
        old = next((row for row in rows if row["contender"] == OLD_DEFAULT_ROW), None)
        for row in rows:
            if old is not None:
                row["wer_delta_vs_old_default"] = wer_difference(row["text"], old["text"], reference)
        results += rows
    report = dict(bench="transcribe", created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  model=str(args.model), reference_contender=REFERENCE_ROW, old_default_contender=OLD_DEFAULT_ROW, rounds=args.rounds, machine=info,
                  default_decoding=_plain(dataclasses.asdict(DecodingOptions())), results=results)
    print_table(results)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in info['load_average_end'])}; written to {path}")
    return report


def sentence_errors(hypothesis: str, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """(errors, words) per line of the reference: the normalised hypothesis aligned to the whole
    normalised reference (jiwer), each substitution or deletion charged to the sentence of its
    reference word, an insertion to the sentence of the word before it."""
    import jiwer

    owners = [index for index, line in enumerate(reference.splitlines()) for _ in normalize(line).split()]
    words = np.bincount(owners, minlength=len(reference.splitlines())).astype(float)
    errors = np.zeros_like(words)
    text = " ".join(normalize(line) for line in reference.splitlines() if normalize(line))
    for chunk in jiwer.process_words(text, normalize(hypothesis) or "-").alignments[0]:
        if chunk.type in ("substitute", "delete"):
            np.add.at(errors, owners[chunk.ref_start_idx: chunk.ref_end_idx], 1)
        elif chunk.type == "insert":
            errors[owners[max(chunk.ref_start_idx - 1, 0)]] += chunk.hyp_end_idx - chunk.hyp_start_idx
    return errors, words


def wer_difference(text: str, baseline: str, reference: str) -> dict:
    """WER(text) - WER(baseline) in points, with a 95 % paired bootstrap interval over the
    reference's sentences (both texts charged sentence by sentence, resampled together)."""
    errors, words = sentence_errors(text, reference)
    baseline_errors, _ = sentence_errors(baseline, reference)
    low, high = bootstrap_interval(errors - baseline_errors, words)
    return dict(delta=round(float(100 * (errors.sum() - baseline_errors.sum()) / words.sum()), 2),
                low=round(low, 2), high=round(high, 2))


def _profile(wall: float, cpu: float, clock: Clock) -> dict:
    """Where one run's time went: wall and CPU seconds per phase, the rest as "other"."""
    return {"wall_s": {**{p: round(clock.wall[p], 3) for p in PHASES}, "other": round(wall - sum(clock.wall.values()), 3)},
            "cpu_s": {**{p: round(clock.cpu[p], 3) for p in PHASES}, "other": round(cpu - sum(clock.cpu.values()), 3)},
            "encoder_windows": clock.windows}


def _result(recording: str, name: str, measured: list[dict], base: dict, reference: str, duration: float,
            tried: list[str]) -> dict:
    """One row of the JSON: medians over the runs; the profile and text of the run of median wall time."""
    wall, cpu = (statistics.median(run[key] for run in measured) for key in ("wall", "cpu"))
    median_run = min(measured, key=lambda run: abs(run["wall"] - wall))
    output = median_run["output"]
    median_segment, longest_segment = segment_lengths(output.spans)
    return dict(
        recording=recording, contender=name, settings=_settings(name, tried), duration_s=round(duration, 2),
        wall_s=round(wall, 3), ratio=round(wall / base["wall"], 3),
        cpu_s=round(cpu, 3), cpu_ratio=round(cpu / base["cpu"], 3),
        wer=round(statistics.median(run["wer"] for run in measured), 2),
        wer_runs=[round(run["wer"], 2) for run in measured],
        words_ratio=round(len(output.text.split()) / len(reference.split()), 3),
        loops=any(is_degenerate(run["output"].text) for run in measured), runs=len(measured),
        walls_s=[round(run["wall"], 3) for run in measured], cpus_s=[round(run["cpu"], 3) for run in measured],
        segments=len(output.spans), median_segment_s=round(median_segment, 2),
        longest_segment_s=round(longest_segment, 2), profile=median_run["profile"], text=output.text)


def _settings(name: str, tried: list[str]) -> dict:
    """What a row ran: our engine's DecodingOptions in full, or the peer's call."""
    ours_rows = {**OURS, **OPTIONAL_OURS, **dict(parse_try(spec) for spec in tried)}
    if name in ours_rows:
        return _plain(dataclasses.asdict(DecodingOptions(**ours_rows[name])))
    return {"fw sequential": {"call": "WhisperModel.transcribe", "language": "gl"},
            REFERENCE_ROW: {"call": "BatchedInferencePipeline.transcribe", "batch_size": 8, "beam_size": 1},
            "fw batched beam 5": {"call": "BatchedInferencePipeline.transcribe", "batch_size": 8, "beam_size": 5},
            "fw greedy": {"call": "WhisperModel.transcribe", "beam_size": 1, "temperature": 0.0},
            "seed pipeline": {"call": "transformers pipeline", "return_timestamps": True}}.get(name, {})


def _plain(values: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def print_table(results: list[dict]) -> None:
    for recording in dict.fromkeys(row["recording"] for row in results):
        rows = [row for row in results if row["recording"] == recording]
        print(f"\n{recording} ({rows[0]['duration_s']:.1f} s): medians of {rows[0]['runs']} runs\n")
        print(f"| contender | wall s | wall / {REFERENCE_ROW} | CPU s | CPU / ref | WER % (runs) "
              "| WER - old default (95 % CI) | words out / read | loops | segments: median / longest s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for row in rows:
            runs = "" if len(set(row["wer_runs"])) == 1 else f" ({min(row['wer_runs']):.1f}-{max(row['wer_runs']):.1f})"
            delta = row.get("wer_delta_vs_old_default")
            delta = f"{delta['delta']:+.1f} ({delta['low']:+.1f} to {delta['high']:+.1f})" if delta else "-"
            print(f"| {row['contender']} | {row['wall_s']:.1f} | {row['ratio']:.2f}x | {row['cpu_s']:.1f} | "
                  f"{row['cpu_ratio']:.2f}x | {row['wer']:.1f}{runs} | {delta} | {row['words_ratio']:.2f} | "
                  f"{'YES' if row['loops'] else 'no'} | {row['median_segment_s']:.1f} / {row['longest_segment_s']:.1f} |")
        print(f"\n{recording}: where the time went (the run of median wall time; CPU seconds count both threads)\n")
        print("| contender | encoder windows | VAD s wall / CPU | log-mel | encoder | decoder | other |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            wall, cpu = row["profile"]["wall_s"], row["profile"]["cpu_s"]
            print(f"| {row['contender']} | {row['profile']['encoder_windows']} | "
                  + " | ".join(f"{wall[p]:.2f} / {cpu[p]:.2f}" for p in (*PHASES, "other")) + " |")


if __name__ == "__main__":
    main()
