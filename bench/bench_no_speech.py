"""The no-speech guard: how often does sound without speech become text, and speech get lost?

    .venv/bin/python bench/bench_no_speech.py --label after [--models DIR ...] [--seconds 3]
    .venv/bin/python bench/bench_no_speech.py --label before   # run from a checkout of the old code

Two sets, made on the spot (tests/support.py, the same as tests/test_no_speech.py): noise_clips
(white, pink, brown and velvet noise at three levels and two seeds, mains hum at 50 and 60 Hz,
steady tones; --seconds long) and noisy_speech_clips (the sample corpus's test clips, each under
another kind of noise at 10 dB SNR). Every model is run in four settings: sequential and batched
long-form decoding, greedy (beam 1, temperature 0) and the engine's default (beam 5, temperature
fallback); and two ways:

  gate        the engine as it is: the voice-activity gate first (whole recording), then the decode
  decoder     the gate made to hear speech everywhere (as it did in 20 s of white noise): what the
              guard after the decoder holds on its own (before it: nothing); greedy settings only
              unless --full (the fallback samples up to 30 candidates a clip on noise: minutes)

Per row: noise clips that gave text (false text), noisy-speech clips that gave none (lost speech),
the CER of the noisy-speech transcripts against their sentences, and the wall time. The rows are
written to --output under --label (other labels kept), and every label there is printed side by
side, so a run of the old code (--label before, from `git archive main`) and one of the new
(--label after) make one before/after table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whisper_gl.runtime import passive_openmp_waits  # noqa: E402

passive_openmp_waits()

from bench.machine import cpu_name  # noqa: E402
from tests.support import lavfi_samples, noise_clips, noisy_speech_clips  # noqa: E402
from whisper_gl import transcribe as engine_module  # noqa: E402
from whisper_gl.metrics import compute_metrics  # noqa: E402
from whisper_gl.transcribe import Transcriber  # noqa: E402

SETTINGS = {
    "sequential greedy": dict(long_form="sequential", beam_size=1, temperatures=(0.0,)),
    "batched greedy": dict(long_form="batched", beam_size=1, temperatures=(0.0,)),
    "sequential default": dict(long_form="sequential"),
    "batched default": dict(long_form="batched"),
}
GATES = ("gate", "decoder")
ISSUE_CLIP = "anoisesrc=d=20:c=white:r=16000:a=0.5:seed=2"  # issue 21's: "O água é o água e o água."


def run(engine: Transcriber, noise: dict, speech: dict, gate: str) -> dict:
    fooled = mock.patch.object(engine_module, "has_speech", lambda waveform: True) if gate == "decoder" \
        else contextlib.nullcontext()
    began = time.perf_counter()
    with fooled:
        false_text = {name: text for name, clip in noise.items() if (text := engine.transcribe(clip).text)}
        heard = {name: engine.transcribe(clip).text for name, (clip, _) in speech.items()}
    return dict(
        noise_clips=len(noise), false_text=len(false_text), false_texts=false_text,
        speech_clips=len(speech), lost_speech=sum(not text for text in heard.values()),
        lost=[name for name, text in heard.items() if not text],
        cer=round(compute_metrics(list(heard.values()), [sentence for _, sentence in speech.values()])["cer"], 1),
        seconds=round(time.perf_counter() - began, 1))


def table(runs: dict) -> str:
    labels = sorted(runs, key=lambda label: (label != "before", label != "after", label))
    header = ["model", "setting", "way", *(f"{column} {label}" for label in labels
                                         for column in ("false text", "lost speech", "CER"))]
    keys = [(row["model"], row["setting"], row["gate"]) for row in runs[labels[0]]]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for key in keys:
        cells = list(key)
        for label in labels:
            row = next((r for r in runs[label] if (r["model"], r["setting"], r["gate"]) == key), None)
            cells += ["-"] * 3 if row is None else [f"{row['false_text']}/{row['noise_clips']}",
                                                     f"{row['lost_speech']}/{row['speech_clips']}", f"{row['cer']}"]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", help="name of this run in the JSON, e.g. before or after (none: print the "
                                         "table of the runs already there)")
    parser.add_argument("--models", nargs="+", default=["artifacts/model", "artifacts/whisper-base"],
                        help="model folders (default: the demo model and the untuned base)")
    parser.add_argument("--backend", default="ctranslate2", help="engine backend (default: %(default)s)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="decoding settings to run (default: all)")
    parser.add_argument("--gates", nargs="+", default=list(GATES), choices=GATES, help="ways to run (default: both)")
    parser.add_argument("--full", action="store_true", help="the decoder way with the default settings too")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of every noise clip (default: %(default)s)")
    parser.add_argument("--speech-clips", type=int, default=12, help="noisy-speech clips (default: %(default)s)")
    parser.add_argument("--output", default=str(ROOT / "bench/results/no_speech.json"), help="JSON (default: %(default)s)")
    args = parser.parse_args()
    output = Path(args.output)
    saved = json.loads(output.read_text()) if output.is_file() else {"runs": {}}
    if args.label is None:
        print(table(saved["runs"]) if saved["runs"] else f"no runs in {output}")
        return

    noise = noise_clips(args.seconds)
    noise["issue-white-20s"] = lavfi_samples(ISSUE_CLIP)
    speech = noisy_speech_clips(ROOT / "Resources/cv-corpus-sample/gl", args.speech_clips)
    rows = []
    for model in args.models:
        for setting in args.settings:
            engine = Transcriber(model, backend=args.backend, **SETTINGS[setting])
            for gate in args.gates:
                if gate == "decoder" and "greedy" not in setting and not args.full:
                    continue
                row = dict(model=Path(model).name, backend=engine.backend, setting=setting, gate=gate,
                           **run(engine, noise, speech, gate))
                print(f"{row['model']:12} {setting:20} {gate:8} false text {row['false_text']}/{row['noise_clips']}"
                      f"  lost speech {row['lost_speech']}/{row['speech_clips']}  CER {row['cer']}"
                      f"  {row['seconds']} s", flush=True)
                rows.append(row)
    saved = json.loads(output.read_text()) if output.is_file() else {"runs": {}}  # others may have run meanwhile
    saved["runs"][args.label] = rows
    saved.setdefault("machines", {})[args.label] = dict(
        cpu=cpu_name(), cores=os.cpu_count(), noise_seconds=args.seconds,
        isa=os.environ.get("CT2_FORCE_CPU_ISA", "auto"), mkl=os.environ.get("CT2_USE_MKL", "auto"))
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(".tmp")
    temporary.write_text(json.dumps(saved, ensure_ascii=False, indent=1))
    temporary.replace(output)
    print(table(saved["runs"]))


if __name__ == "__main__":
    main()
