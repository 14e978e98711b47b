"""Transcription speed and accuracy: our engine against faster-whisper's pipelines and the seed's way.

    .venv/bin/python bench/bench_transcribe.py [--model DIR] [--audio FILE] [--rounds 3] [--skip ROW ...]

Same model (its CTranslate2 int8 export for every CTranslate2 row), same recording, one process.
Every system is loaded and warmed up first (3 s of audio); then the rounds run the systems in
turn, the order rotated each round, so that a shared machine's load falls on all of them alike;
each row reports its median wall time.

Rows:
  ours batched             --long-form batched: voice-activity chunks decoded in batches of 8, beam 5,
                           temperature fallback, token budget and loop collapse per chunk
  ours batched greedy      the same with beam 1
  ours sequential          the default: window after window, beam 5, the same guards
  ours batched + words     batched with --word-timestamps
  fw defaults              faster-whisper WhisperModel.transcribe(audio, language): beam 5, fallback,
                           conditioning on the previous window
  fw greedy                beam 1, temperature 0 only, no fallback
  fw vad_filter            defaults plus vad_filter=True
  fw batched beam 5        BatchedInferencePipeline.transcribe(audio, language, batch_size=8)
  fw batched greedy        the same with beam 1: the fastest peer, the reference of the ratio column
  seed + timestamps        transformers pipeline("automatic-speech-recognition")(path, return_timestamps=True),
                           the seed's call (it cannot transcribe past 30 s without timestamps)
Columns: median wall time, real-time factor, wall time over fw batched greedy's, the same for this
process's CPU time (steadier than wall time when other jobs share the machine), words out against
the words read (a loop inflates it, truncation deflates it), normalised WER, and loops.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()  # every row alike: idle OpenMP threads sleep (before torch loads)

from whisper_gl.audio import load_audio  # noqa: E402
from whisper_gl.backends import ctranslate2_export  # noqa: E402
from whisper_gl.metrics import compute_metrics  # noqa: E402
from whisper_gl.models import resolve_model  # noqa: E402
from whisper_gl.transcribe import Transcriber, default_model, is_degenerate  # noqa: E402

REFERENCE_ROW = "fw batched greedy"
Transcribe = Callable[[object], str]  # a waveform in, the text out


def ours(folder: Path, **settings) -> Transcribe:
    engine = Transcriber(folder, **settings)
    return lambda audio: engine.transcribe(audio).text


def faster_whisper(export: Path, batched: bool = False, **settings) -> Transcribe:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(str(export), device="cpu", compute_type="int8")
    if batched:
        pipeline = BatchedInferencePipeline(model)
        return lambda audio: " ".join(s.text.strip() for s in pipeline.transcribe(audio, language="gl", batch_size=8,
                                                                                   **settings)[0])
    return lambda audio: " ".join(s.text.strip() for s in model.transcribe(audio, language="gl", **settings)[0])


def seed_pipeline(folder: Path) -> Transcribe:
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    generate = {"language": "gl", "task": "transcribe"}
    return lambda audio: asr(audio.copy(), generate_kwargs=generate, return_timestamps=True)["text"]


def systems(folder: Path) -> dict[str, Callable[[], Transcribe]]:
    export = ctranslate2_export(folder)
    return {
        "ours batched": lambda: ours(folder, long_form="batched"),
        "ours batched greedy": lambda: ours(folder, long_form="batched", beam_size=1),
        "ours sequential": lambda: ours(folder, long_form="sequential"),
        "ours batched + words": lambda: ours(folder, long_form="batched", word_timestamps=True),
        "fw defaults": lambda: faster_whisper(export),
        "fw greedy": lambda: faster_whisper(export, beam_size=1, temperature=0.0),
        "fw vad_filter": lambda: faster_whisper(export, vad_filter=True),
        "fw batched beam 5": lambda: faster_whisper(export, batched=True, beam_size=5),
        REFERENCE_ROW: lambda: faster_whisper(export, batched=True, beam_size=1),
        "seed + timestamps": lambda: seed_pipeline(folder),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model(), help="model folder or Hub id (default: %(default)s)")
    parser.add_argument("--audio", default=str(REPO / "Resources/examples/long.mp3"), help="long recording (default: %(default)s)")
    parser.add_argument("--reference", default=None, help="its transcript (default: the audio's .txt)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of every system (default: %(default)s)")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out, e.g. 'seed + timestamps'")
    args = parser.parse_args(argv)

    folder = resolve_model(args.model)
    if ctranslate2_export(folder) is None:
        raise SystemExit(f"no CTranslate2 export in {folder}: run `whisper-gl export --model {args.model}`")
    reference = Path(args.reference or Path(args.audio).with_suffix(".txt")).read_text()
    audio = load_audio(args.audio)  # decoded once: every row gets the same samples
    duration = len(audio) / 16000
    print(f"model {args.model}, audio {args.audio} ({duration:.1f} s, {len(reference.split())} words read), "
          f"{os.cpu_count()} CPUs, {args.rounds} rounds")

    loaded: dict[str, Transcribe] = {}
    for name, build in systems(folder).items():
        if name not in args.skip:
            loaded[name] = build()
            loaded[name](audio[: 3 * 16000])  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in loaded}
    cpus: dict[str, list[float]] = {name: [] for name in loaded}  # this process's CPU time: steadier on a shared machine
    texts: dict[str, str] = {}
    names = list(loaded)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            began, cpu = time.perf_counter(), time.process_time()
            texts[name] = loaded[name](audio)
            walls[name].append(time.perf_counter() - began)
            cpus[name].append(time.process_time() - cpu)
            print(f"  round {round_index + 1}: {name}: {walls[name][-1]:.1f} s", flush=True)

    rows = [dict(system=name, wall=statistics.median(walls[name]), cpu=statistics.median(cpus[name]),
                 rtf=statistics.median(walls[name]) / duration,
                 words=len(texts[name].split()) / len(reference.split()),
                 wer=compute_metrics([texts[name]], [reference])["wer"], loops=is_degenerate(texts[name]))
            for name in names]
    base = next((row for row in rows if row["system"] == REFERENCE_ROW), None)
    print()
    print(f"| system | wall s | RTF | wall / {REFERENCE_ROW} | CPU s | CPU / {REFERENCE_ROW} | words out / read "
          "| WER % | loops |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        ratios = [f"{row[key] / base[key]:.2f}x" if base else "-" for key in ("wall", "cpu")]
        print(f"| {row['system']} | {row['wall']:.1f} | {row['rtf']:.3f} | {ratios[0]} | {row['cpu']:.1f} | "
              f"{ratios[1]} | {row['words']:.2f} | {row['wer']:.1f} | {'YES' if row['loops'] else 'no'} |")
    return rows


if __name__ == "__main__":
    main()
