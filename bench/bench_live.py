"""Live captions in (simulated) real time: how late is each word confirmed, and how right is it?

    .venv/bin/python bench/bench_live.py [--models DIR ...] [--inputs FILE ...] [--step 0.5]

Feeds each recording to the streaming API (Transcriber.stream) as a microphone would: chunks of
--chunk seconds, one arriving every --chunk seconds. Time is simulated but charges the real
decode time: a push that decodes for d seconds delays everything after it by d, and audio that
arrives meanwhile waits (it is pushed as soon as the engine is free). A word's lag is the
moment it is confirmed minus the moment it was spoken: the end of the same word in the offline
transcription's word timestamps (words matched by difflib over normalised words). Reported per
model and recording: the median and p90 lag of the confirmed words, the time to the first
confirmed word (from the start of the recording), the WER of the confirmed live text, of
finish() (the whole recording decoded again) and of the offline transcription against the
reference (the .txt beside the recording), and the seconds of live decoding per second of audio.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()

from whisper_gl.audio import load_audio  # noqa: E402
from whisper_gl.config import LiveOptions  # noqa: E402
from whisper_gl.metrics import compute_metrics, normalize  # noqa: E402
from whisper_gl.streaming import live_transcript  # noqa: E402
from whisper_gl.transcribe import Transcriber  # noqa: E402
from whisper_gl.window import SAMPLING_RATE  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "Resources" / "examples"


@dataclass
class LiveRun:
    lags: list[float]  # per confirmed word matched to an offline word
    first: float | None  # seconds from the start of the recording to the first confirmed word
    live_text: str
    finish_text: str
    offline_text: str
    decode_per_second: float
    max_buffered: float
    matched: int
    confirmed: int


def matched_lags(confirmed: list[tuple[str, float]], offline_words) -> list[float]:
    """(confirmation time - offline end) for the confirmed words difflib matches to offline ones."""
    live_keys = [normalize(text) for text, _ in confirmed]
    offline_keys = [normalize(word.text) for word in offline_words]
    matcher = difflib.SequenceMatcher(a=live_keys, b=offline_keys, autojunk=False)
    return [confirmed[block.a + k][1] - offline_words[block.b + k].end
            for block in matcher.get_matching_blocks() for k in range(block.size)]


def simulate(engine: Transcriber, audio: np.ndarray, chunk_seconds: float, live: LiveOptions) -> LiveRun:
    """Push `audio` in chunks on a simulated clock that charges each push's real duration."""
    offline = engine.transcribe(audio, word_timestamps=True)
    offline_words = [word for segment in offline.segments for word in segment.words]
    stream = live_transcript(engine, live=live)
    chunk = round(chunk_seconds * SAMPLING_RATE)
    clock, confirmed, max_buffered = 0.0, [], 0.0
    for start in range(0, len(audio), chunk):
        arrives = min(start + chunk, len(audio)) / SAMPLING_RATE
        clock = max(clock, arrives)  # the engine is idle until the chunk arrives, or busy past it
        before = len(stream.words)
        began = time.perf_counter()
        stream.push(audio[start: start + chunk])
        clock += time.perf_counter() - began
        max_buffered = max(max_buffered, stream.buffered_seconds)
        confirmed += [(word.text, clock) for word in stream.words[before:]]
    before = len(stream.words)
    began = time.perf_counter()
    stream.close()
    clock += time.perf_counter() - began
    confirmed += [(word.text, clock) for word in stream.words[before:]]
    live_text = stream.text
    decode_per_second = stream.decode_seconds / (len(audio) / SAMPLING_RATE)
    finish_text = stream.finish().text
    lags = matched_lags(confirmed, offline_words)
    return LiveRun(lags, confirmed[0][1] if confirmed else None, live_text, finish_text, offline.text,
                   decode_per_second, max_buffered, len(lags), len(confirmed))


def wer(text: str, reference: str) -> float:
    return compute_metrics([text], [reference])["wer"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["base", "fine-tuned"],
                        help="model folders (default: %(default)s)")
    parser.add_argument("--inputs", nargs="+", default=[str(EXAMPLES / "long.mp3"), str(EXAMPLES / "short.mp3")],
                        help="recordings, each with its reference text in a .txt beside it (default: %(default)s)")
    parser.add_argument("--chunk", type=float, default=0.5,
                        help="seconds of audio per push, one push every that many seconds (the app's stream_every; "
                             "default: %(default)s)")
    defaults = LiveOptions()
    parser.add_argument("--step", type=float, default=defaults.step_seconds, help="new audio before a decode (LiveOptions.step_seconds; default: %(default)s)")
    parser.add_argument("--window", type=float, default=defaults.window_seconds, help="the live decodes' window (LiveOptions.window_seconds; default: %(default)s)")
    parser.add_argument("--trim", type=float, default=defaults.trim_seconds, help="audio held before a cut at a segment end (LiveOptions.trim_seconds; default: %(default)s)")
    parser.add_argument("--prompt", action=argparse.BooleanOptionalAction, default=defaults.prompt,
                        help="prompt with the confirmed text cut away (LiveOptions.prompt; default: %(default)s)")
    parser.add_argument("--paced", action=argparse.BooleanOptionalAction, default=defaults.paced,
                        help="decode no more often than decoding takes (LiveOptions.paced; default: %(default)s)")
    parser.add_argument("--live-beam", type=int, default=defaults.beam_size, help="the live decodes' beam (LiveOptions.beam_size; default: %(default)s)")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="the engine's beam: offline and finish() (default: the engine's, 5)")
    parser.add_argument("--language", default="gl", help="forced language (default: %(default)s)")
    parser.add_argument("--show", action="store_true", help="print the live, finish() and offline texts")
    args = parser.parse_args(argv)
    live = LiveOptions(step_seconds=args.step, window_seconds=args.window, trim_seconds=args.trim,
                       prompt=args.prompt, paced=args.paced,
                       beam_size=args.live_beam)
    print(f"{os.cpu_count()} CPUs; chunks of {args.chunk} s; {live}; simulated time charging real decode time")
    print("| model | input | audio s | words | median lag s | p90 lag s | first word s | WER live | WER finish() "
          "| WER offline | decode s / audio s | max buffer s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models:
        settings = {"beam_size": args.beam_size} if args.beam_size else {}
        engine = Transcriber(model, language=args.language, **settings)
        for path in args.inputs:
            audio = load_audio(path)
            reference = Path(path).with_suffix(".txt").read_text(encoding="utf-8")
            run = simulate(engine, audio, args.chunk, live)
            lags = np.array(run.lags) if run.lags else np.array([np.nan])
            first = f"{run.first:.1f}" if run.first is not None else "-"
            print(f"| {Path(model).name} | {Path(path).name} | {len(audio) / SAMPLING_RATE:.1f} "
                  f"| {run.matched}/{run.confirmed} | {np.median(lags):.2f} | {np.percentile(lags, 90):.2f} | {first} "
                  f"| {wer(run.live_text, reference):.2f} | {wer(run.finish_text, reference):.2f} "
                  f"| {wer(run.offline_text, reference):.2f} | {run.decode_per_second:.2f} | {run.max_buffered:.1f} |",
                  flush=True)
            if args.show:
                for name, text in (("live", run.live_text), ("finish", run.finish_text), ("offline", run.offline_text)):
                    print(f"  {name}: {text}")


if __name__ == "__main__":
    main()
