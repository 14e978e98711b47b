"""Training speed at Whisper's 30-second window against a shorter one: same clips, same model, one run.

    .venv/bin/python bench/bench_window.py [--model DIR] [--features DIR] [--window 10]
                                           [--batch-size N] [--steps 3] [--rounds 2]
    .venv/bin/python bench/bench_window.py --long-form MODEL_30S MODEL_10S [--audio FILE]

Both rows train through the project's own path, whisper_gl.training.build_trainer with the smoke
preset's settings: the collator pads the stored features of the same clips to the window (3000 or
1000 frames), then Seq2SeqTrainer runs forward, backward and the AdamW step. The short-window
model is the same checkpoint cut by training.shorten_window, as train.py cuts it for 10 s features.
The windows take turns (--rounds), each turn a fresh train() whose first step is an untimed
warm-up, so load from other jobs on a shared machine falls on both alike. Samples/s counts whole
optimizer steps from the end of the warm-up step to the end of the last one, batches included.

--long-form: what the window costs at inference instead. Each fine-tuned model transcribes the
same long recording through the engine, with each backend (CTranslate2 when the model folder has
its export) and each --timestamps mode, one warm-up on 3 s first: segments, words out against
words read (a loop inflates it), WER/CER against the recording's .txt, decode time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()  # every row alike: idle OpenMP threads sleep (before torch loads)

import dataclasses  # noqa: E402

from whisper_gl.paths import BASE_MODEL, home  # noqa: E402
from whisper_gl.config import TIMESTAMP_MODES, TrainConfig  # noqa: E402
from whisper_gl.manifest import FeaturesManifest  # noqa: E402
from whisper_gl.training import (  # noqa: E402
    build_trainer,
    hardware_precision,
    load_model,
    load_training_features,
    resolve_config,
    shorten_window,
    training_arguments,
)
from whisper_gl.models import resolve_model  # noqa: E402
from whisper_gl.window import Window  # noqa: E402

from step_clock import timed_steps  # noqa: E402  (bench/ is on sys.path as the script's folder)


def window_trainer(config: TrainConfig, dataset, manifest: FeaturesManifest, window_seconds: int, scratch: str):
    """A trainer for `window_seconds` windows on the given features, through the training module."""
    processor, model = load_model(resolve_model(config.model), manifest.language, manifest.task)
    window = Window.of_seconds(window_seconds)
    if window.frames < Window.of(model.config).frames:
        shorten_window(model, processor, window)
    manifest = dataclasses.replace(manifest, window_frames=window.frames)
    args = training_arguments(config, scratch, report=False)
    args.eval_on_start = False
    return build_trainer(config, model, processor, dataset, manifest, args)


def long_form_table(models: list[str], audio_path: str) -> None:
    """One row per model, backend and timestamps mode on the same recording."""
    from whisper_gl.audio import load_audio
    from whisper_gl.backends import ctranslate2_export
    from whisper_gl.metrics import compute_metrics
    from whisper_gl.transcribe import Transcriber

    audio = load_audio(audio_path)
    reference = Path(audio_path).with_suffix(".txt").read_text()
    print(f"{audio_path}: {len(audio) / 16000:.1f} s, {len(reference.split())} words read")
    print("| model | window | backend | --timestamps | segments | words out / read | WER % | CER % | decode s |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for model in models:
        backends = ["transformers"]
        if ctranslate2_export(resolve_model(model)) is not None:
            backends.insert(0, "ctranslate2")
        for backend in backends:
            for timestamps in TIMESTAMP_MODES:
                engine = Transcriber(model, backend=backend, timestamps=timestamps)
                engine.transcribe(audio[: 3 * 16000])  # warm-up
                result = engine.transcribe(audio)
                scores = compute_metrics([result.text], [reference])
                print(f"| {model} | {engine.window.describe()} | {backend} | {timestamps} | {len(result.segments)} | "
                      f"{len(result.text.split())} / {len(reference.split())} | {scores['wer']:.1f} | "
                      f"{scores['cer']:.1f} | {result.elapsed:.1f} |", flush=True)


def main(argv: list[str] | None = None) -> dict[int, list[float]] | None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=BASE_MODEL,
                        help="Whisper checkpoint, 30 s window (default: %(default)s)")
    parser.add_argument("--features", default=str(home().features),
                        help="features from feature_extraction.py; every clip must fit the short window "
                             "(default: %(default)s)")
    parser.add_argument("--window", type=int, default=10, help="short window in seconds (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step (default: the smoke preset's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per turn, after one warm-up step")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each window, alternating")
    parser.add_argument("--long-form", nargs="+", metavar="MODEL",
                        help="instead: transcribe --audio with these fine-tuned models (e.g. a 30 s and a 10 s one)")
    parser.add_argument("--audio", default=str(REPO / "Resources/examples/long.mp3"),
                        help="--long-form recording, its transcript beside it as .txt (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.long_form:
        long_form_table(args.long_form, args.audio)
        return None

    dataset, manifest = load_training_features(args.features)
    longest = max(len(row[0]) for row in dataset["train"].with_format("numpy")["input_features"])
    if longest > Window.of_seconds(args.window).frames:
        parser.error(f"the longest training clip has {longest} frames: more than a {args.window} s window")
    config = resolve_config(TrainConfig(features=args.features, preset="smoke", model=args.model,
                                        batch_size=args.batch_size, max_steps=args.steps + 1,
                                        logging_steps=args.steps + 1))
    windows = (30, args.window)
    device = f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else \
        f"cpu ({torch.get_num_threads()} threads)"
    batch_size = config.batch_size
    print(f"{args.model}, {len(dataset['train'])} training clips, batch {batch_size}, {hardware_precision(config.precision)}, "
          f"{device}; {args.rounds} rounds x (1 warm-up + {args.steps} timed steps) per window")

    rates: dict[int, list[float]] = {window: [] for window in windows}
    step_seconds: dict[int, list[float]] = {window: [] for window in windows}
    with tempfile.TemporaryDirectory(prefix="bench-window-") as scratch:
        trainers = {window: window_trainer(config, dataset, manifest, window, f"{scratch}/{window}")
                    for window in windows}
        for round_ in range(args.rounds):
            for window in windows:
                rate, per_step = timed_steps(trainers[window], batch_size)
                rates[window].append(rate)
                step_seconds[window].append(per_step)
                print(f"round {round_ + 1}: {window:>2} s window  {rate:6.2f} samples/s  {per_step:6.2f} s/step",
                      flush=True)

    baseline = sum(rates[30]) / len(rates[30])
    print()
    print("| window | encoder positions | s/step | samples/s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for window in windows:
        rate = sum(rates[window]) / len(rates[window])
        per_step = sum(step_seconds[window]) / len(step_seconds[window])
        print(f"| {window} s | {Window.of_seconds(window).positions} | {per_step:.2f} | {rate:.2f} | "
              f"{rate / baseline:.2f}x |")
    return rates


if __name__ == "__main__":
    main()
