#!/usr/bin/env python
"""Feature stage: the seed's way against ours, on the same clips, in one run.

- seed: datasets decodes and resamples each clip (Audio(sampling_rate=16000)), the numpy
  WhisperFeatureExtractor pads it to 30 s, 80 x 3000 float32 is stored per clip
  (transformers of the seed's time had only the numpy path; it is forced here);
- seed + torch: the same with today's torch extractor, to show what the storage and
  batching change on their own;
- ours: feature_extraction.py's pipeline (whisper_gl.features.extract_features):
  in-process decoding, one batched STFT per 32 clips on audio padded only a little,
  real-length float16 storage, plus its reports (stats, rejects).

Each way runs the whole stage (processor loading, map, save_to_disk) in this process,
after a small warm-up; bytes per clip is the saved folder's size over the clips. Per hour of
audio (what sizes a real corpus: Common Voice clips are longer than the sample's): the seconds
the stage takes for an hour of audio, and the bytes it stores for it. A second table times
load_audio's two decoders on the same files.

The results also go to --json (default bench/results/features.json), which
`python scripts/tables.py` renders into the docs (benchmarks, real-data recipe).

    .venv/bin/python bench/bench_features.py [--dataset FOLDER] [--model DIR] [--clips N] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()  # every row alike: idle OpenMP threads sleep (before torch loads)

import datasets  # noqa: E402

from bench.machine import machine  # noqa: E402
from whisper_gl.audio import load_audio  # noqa: E402
from whisper_gl.config import FeatureConfig  # noqa: E402
from whisper_gl.features import extract_features  # noqa: E402
from whisper_gl.models import resolve_model  # noqa: E402
from whisper_gl.paths import BASE_MODEL  # noqa: E402
from whisper_gl.sources import as_dataset_dict, load_source  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "features.json"


def corpus_of(source: Path, clips: int | None, folder: Path) -> tuple[Path, int]:
    """A Common Voice folder listing `clips` clips of `source` (all its clips, repeated if asked)."""
    rows = []
    for tsv in ("train.tsv", "dev.tsv", "test.tsv"):
        with open(source / tsv, newline="", encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    clips = clips or len(rows)
    rows = (rows * (clips // len(rows) + 1))[:clips]
    folder.mkdir(parents=True)
    (folder / "clips").symlink_to((source / "clips").resolve())
    eighth = max(1, clips // 8)  # train / dev / test like a release: 6/8, 1/8, 1/8
    parts = {"test.tsv": rows[:eighth], "dev.tsv": rows[eighth:2 * eighth], "train.tsv": rows[2 * eighth:]}
    for name, part in parts.items():
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t", quoting=csv.QUOTE_NONE,
                                    quotechar=None)
            writer.writeheader()
            writer.writerows(part)
    return folder, clips


def seed_way(corpus: Path, model: str, output: Path, *, numpy: bool) -> None:
    """The seed's prepare_dataset, as in its notebook, over train + test."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizer
    from transformers.models.whisper import feature_extraction_whisper

    extractor = WhisperFeatureExtractor.from_pretrained(model)
    tokenizer = WhisperTokenizer.from_pretrained(model, language="galician", task="transcribe")
    source = as_dataset_dict(load_source(str(corpus))).cast_column("audio", datasets.Audio(sampling_rate=16000))

    def prepare_dataset(batch):
        audio = batch["audio"]
        batch["input_features"] = extractor(audio["array"], sampling_rate=audio["sampling_rate"]).input_features[0]
        batch["labels"] = tokenizer(batch["sentence"]).input_ids
        return batch

    numpy_only = mock.patch.object(feature_extraction_whisper, "is_torch_available", lambda: False)
    with numpy_only if numpy else contextlib.nullcontext(), tempfile.TemporaryDirectory() as cache:
        prepared = datasets.DatasetDict({
            split: dataset.map(prepare_dataset, remove_columns=dataset.column_names,
                               cache_file_name=f"{cache}/{split}.arrow", desc=f"seed ({split})")
            for split, dataset in source.items()
        })
        prepared.save_to_disk(str(output))


def our_way(corpus: Path, model: str, output: Path) -> None:
    with contextlib.redirect_stdout(None):  # the stage's own summary; the table below says it
        extract_features(FeatureConfig(dataset=str(corpus), model=model, output_dir=str(output)))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(name, run, corpus: Path, warmup: Path, model: str, work: Path, clips: int, audio_seconds: float) -> dict:
    run(warmup, model, work / f"{name}-warmup")  # imports, first-call costs
    output = work / name
    started = time.perf_counter()
    run(corpus, model, output)
    seconds = time.perf_counter() - started
    stored = folder_bytes(output)
    audio_hours = audio_seconds / 3600
    return {"way": name, "clips": clips, "seconds": seconds, "clips/s": clips / seconds,
            "bytes/clip": stored / clips, "seconds/audio hour": seconds / audio_hours,
            "bytes/audio hour": stored / audio_hours}


def audio_seconds_of(corpus: Path) -> float:
    """Seconds of audio the corpus lists (every clip decoded once, as the stage does)."""
    seconds = 0.0
    for tsv in ("train.tsv", "dev.tsv", "test.tsv"):
        with open(corpus / tsv, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                seconds += len(load_audio(corpus / "clips" / row["path"])) / 16000
    return seconds


def decode_table(corpus: Path, files: int = 40) -> list[dict]:
    paths = sorted((corpus / "clips").iterdir())[:files]
    rows = []
    for backend in ("torchcodec", "ffmpeg"):
        started = time.perf_counter()
        for path in paths:
            load_audio(path, backend=backend)
        rows.append({"decoder": f"load_audio backend={backend}",
                     "ms/clip": (time.perf_counter() - started) / len(paths) * 1000})
    return rows


def print_table(rows: list[dict], columns: list[str]) -> None:
    def cell(value):
        if isinstance(value, float):
            return f"{value:,.1f}" if value < 1e4 else f"{value:,.0f}"
        return str(value)

    table = [columns] + [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO / "Resources/cv-corpus-sample/gl"), help="Common Voice release folder")
    parser.add_argument("--model", default=BASE_MODEL, help="Whisper checkpoint: folder or built-in name (its processor)")
    parser.add_argument("--clips", type=int, default=None, help="clips to process (default: all; repeats if more)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default: %(default)s)")
    args = parser.parse_args()
    args.model = str(resolve_model(args.model))
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory(prefix="bench_features-") as work:
        work = Path(work)
        corpus, clips = corpus_of(Path(args.dataset), args.clips, work / "corpus")
        warmup, _ = corpus_of(Path(args.dataset), 16, work / "warmup")
        audio_seconds = audio_seconds_of(corpus)
        print(f"{clips} clips ({audio_seconds / 60:.1f} min of audio) from {args.dataset}, processor of "
              f"{args.model}, 1 process\n")
        ways = [("seed: numpy extractor, 30 s, fp32", lambda c, m, o: seed_way(c, m, o, numpy=True)),
                ("seed + torch extractor, 30 s, fp32", lambda c, m, o: seed_way(c, m, o, numpy=False)),
                ("ours: real length, fp16, batched", our_way)]
        rows = [measure(name, run, corpus, warmup, args.model, work, clips, audio_seconds) for name, run in ways]
        seed = rows[0]
        for row in rows:
            row["speed x"] = row["clips/s"] / seed["clips/s"]
            row["smaller x"] = seed["bytes/clip"] / row["bytes/clip"]
        print_table(rows, ["way", "clips", "seconds", "clips/s", "bytes/clip", "speed x", "smaller x"])
        print()
        print_table(rows, ["way", "seconds/audio hour", "bytes/audio hour"])
        print()
        decoders = decode_table(Path(args.dataset))
        print_table(decoders, ["decoder", "ms/clip"])
        ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
        print(f"\n({ffmpeg})")
    write_json(Path(args.json), {
        "bench": "bench/bench_features.py", "date": datetime.date.today().isoformat(), "machine": machine(),
        "ffmpeg": ffmpeg, "dataset": args.dataset, "model": args.model, "clips": clips,
        "audio_seconds": audio_seconds, "ways": rows, "decoders": decoders})
    print(f"results: {args.json}")


def write_json(path: Path, results: dict) -> None:
    """Atomically (a temporary name, then rename): a killed run leaves the previous results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)


if __name__ == "__main__":
    main()
