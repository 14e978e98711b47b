"""Memory and speed of `whisper-gl transcribe` over many files: does the process grow with the files?

    .venv/bin/python bench/bench_batch.py [--files 1000] [--model DIR] [--clip FILE]

Links one clip under N names in a temporary folder and runs the batch command in this process
(one model load), first on a tenth of the files, then on all of them into another folder; it
prints the peak resident memory after each run and the files per second. A peak that does not
grow from the short run to the long one means nothing is kept per file.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()

from whisper_gl.batch import transcribe_many  # noqa: E402
from whisper_gl.config import TranscribeConfig  # noqa: E402
from whisper_gl.transcribe import default_model  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="files in the long run (default: %(default)s)")
    parser.add_argument("--model", default=default_model(), help="model folder (default: %(default)s)")
    parser.add_argument("--clip", default=str(REPO / "Resources/examples/short.mp3"), help="the clip (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        inputs = Path(work) / "inputs"
        inputs.mkdir()
        for index in range(args.files):
            os.symlink(Path(args.clip).resolve(), inputs / f"clip-{index:05d}.mp3")
        short = Path(work) / "short-run"
        short.mkdir()
        for index in range(max(1, args.files // 10)):
            os.symlink(Path(args.clip).resolve(), short / f"clip-{index:05d}.mp3")
        print(f"model {args.model}, clip {args.clip}, {os.cpu_count()} CPUs")
        print("| run | files | wall s | files / s | peak RSS MB |")
        print("|---|---:|---:|---:|---:|")
        for name, folder in (("a tenth", short), ("all", inputs)):
            files = len(list(folder.iterdir()))
            config = TranscribeConfig(paths=(str(folder),), output_dir=str(Path(work) / f"out-{name}"),
                                      model=args.model, beam_size=1, temperatures=(0.0,), format=("txt",))
            began = time.perf_counter()
            transcribe_many(config)
            wall = time.perf_counter() - began
            print(f"| {name} | {files} | {wall:.1f} | {files / wall:.1f} | {peak_mb():.0f} |", flush=True)


if __name__ == "__main__":
    main()
