"""Transcription speed and loop check: the seed's way against our engine, same model, same audio.

    .venv/bin/python bench/bench_transcribe.py [--model DIR] [--audio FILE] [--reference TXT]

Rows, all in this one process on the same CPU (each system is warmed up on 3 s of audio first):
  seed pipeline        transformers pipeline("automatic-speech-recognition", model)(path), as the seed's
                       apps called it (language forced to Galician, as the seed's fine-tuned model did)
  seed + timestamps    the same call with return_timestamps=True (what transformers asks for past 30 s)
  seed chunked         the same pipeline with chunk_length_s=30 (the seed's other long-audio recipe)
  ours transformers    Transcriber(backend="transformers"): long-form generate, beam 5, fallback
  ours ctranslate2     Transcriber(backend="ctranslate2"): faster-whisper int8, beam 5, fallback (the CPU default)
  ours ct2 greedy      the same with beam_size=1
Columns: wall time, real-time factor (time / audio duration), speed-up against the seed pipeline,
words out against the words read (a loop inflates it, truncation deflates it), and WER.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()  # every row alike: idle OpenMP threads sleep (before torch loads)

from whisper_gl.transcribe import Transcriber, default_model, is_degenerate  # noqa: E402
from whisper_gl.audio import load_audio  # noqa: E402
from whisper_gl.backends import ctranslate2_export  # noqa: E402
from whisper_gl.metrics import compute_metrics  # noqa: E402
from whisper_gl.store import resolve_model  # noqa: E402


def seed_pipeline(folder: Path, **options):
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")

    def run(path: str) -> str:
        return asr(path, generate_kwargs={"language": "gl", "task": "transcribe"}, **options)["text"]

    return run


def ours(folder: Path, backend: str, beam_size: int = 5):
    engine = Transcriber(folder, backend=backend, beam_size=beam_size)
    return lambda path: engine.transcribe(path).text


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=default_model(), help="model folder or Hub id (default: %(default)s)")
    parser.add_argument("--audio", default="Resources/examples/long.mp3", help="long recording (default: %(default)s)")
    parser.add_argument("--reference", default=None, help="its transcript (default: the audio's .txt)")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out, e.g. 'seed chunked'")
    args = parser.parse_args(argv)

    folder = resolve_model(args.model)
    reference = Path(args.reference or Path(args.audio).with_suffix(".txt")).read_text()
    duration = len(load_audio(args.audio)) / 16000
    warmup = "/tmp/.bench_transcribe_warmup.wav"
    import soundfile

    soundfile.write(warmup, load_audio(args.audio)[: 3 * 16000], 16000)

    systems = {
        "seed pipeline": lambda: seed_pipeline(folder),
        "seed + timestamps": lambda: seed_pipeline(folder, return_timestamps=True),
        "seed chunked": lambda: seed_pipeline(folder, chunk_length_s=30),
        "ours transformers": lambda: ours(folder, "transformers"),
        "ours ctranslate2": lambda: ours(folder, "ctranslate2"),
        "ours ct2 greedy": lambda: ours(folder, "ctranslate2", beam_size=1),
    }
    if ctranslate2_export(folder) is None:
        print(f"no CTranslate2 export in {folder}: run `python -m whisper_gl.export --model {args.model}`")
        args.skip += ["ours ctranslate2", "ours ct2 greedy"]
    print(f"model {args.model}, audio {args.audio} ({duration:.1f} s, {len(reference.split())} words read), "
          f"{os.cpu_count()} CPUs")

    rows = []
    for name, build in systems.items():
        if name in args.skip:
            continue
        began = time.perf_counter()
        transcribe = build()
        loaded = time.perf_counter() - began
        transcribe(warmup)
        began = time.perf_counter()
        try:
            text = transcribe(args.audio)
        except Exception as error:  # noqa: BLE001 - a system that cannot do it is a result too
            rows.append(dict(system=name, load=loaded, error=str(error).splitlines()[0][:110]))
            print(f"  {name}: failed: {rows[-1]['error']}")
            continue
        wall = time.perf_counter() - began
        rows.append(dict(system=name, load=loaded, wall=wall, rtf=wall / duration,
                         words=len(text.split()) / len(reference.split()),
                         wer=compute_metrics([text], [reference])["wer"], loops=is_degenerate(text)))
        print(f"  {name}: {wall:.1f} s")
    os.unlink(warmup)

    # The speed-up is against the first seed recipe that ran to the end.
    seed = next((row for row in rows if row["system"].startswith("seed") and "wall" in row), None)
    print()
    print(f"| system | load s | wall s | RTF | speed-up vs {seed['system'] if seed else 'seed'} | "
          "words out / read | WER % | loops |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['system']} | {row['load']:.1f} | fails: {row['error']} | | | | | |")
            continue
        speedup = f"{seed['wall'] / row['wall']:.2f}x" if seed else "-"
        print(f"| {row['system']} | {row['load']:.1f} | {row['wall']:.1f} | {row['rtf']:.2f} | {speedup} | "
              f"{row['words']:.2f} | {row['wer']:.1f} | {'YES' if row['loops'] else 'no'} |")
    return rows


if __name__ == "__main__":
    main()
