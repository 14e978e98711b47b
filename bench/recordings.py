"""Long recordings the benches score against, each with its reference transcript.

    long         Resources/examples/long.mp3 + long.txt (`make corpus`): 124.7 s, one voice,
                 dev/test sentences first, then train ones
    test-split   built here from the sample corpus's TEST clips only (sentences training never
                 saw, alternately an unseen voice and a training voice): every clip of test.tsv
                 in its order, joined by pauses of 0.5-1.2 s, at 16 kHz; the reference is their
                 sentences, one a line

The test-split recording is a pure function of the corpus (same clips, same order, same pauses,
samples decoded by the engine's own audio loader), cached as a 16-bit WAV beside its reference
under artifacts/bench/ and rebuilt when a clip is newer than the cache.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "Resources" / "examples"
CORPUS = ROOT / "Resources" / "cv-corpus-sample" / "gl"
CACHE = ROOT / "artifacts" / "bench"
# Pauses between the test clips, in turn: sentence breaks of varied length, all long enough
# (>= 0.5 s) for the engine's voice-activity split, as in read speech.
PAUSES_SECONDS = (0.6, 0.9, 0.5, 1.2, 0.7)


@dataclass(frozen=True)
class Recording:
    name: str
    audio: Path
    reference: Path

    def text(self) -> str:
        return self.reference.read_text(encoding="utf-8")


def long_example() -> Recording:
    audio = EXAMPLES / "long.mp3"
    if not audio.is_file():
        raise SystemExit(f"{audio} is missing: run `make corpus`")
    return Recording("long", audio, audio.with_suffix(".txt"))


def test_split_recording(corpus: Path = CORPUS, cache: Path = CACHE) -> Recording:
    """The test clips of a Common Voice folder joined into one recording (built once, then cached)."""
    import soundfile as sf

    from whisper_gl.audio import load_audio
    from whisper_gl.window import SAMPLING_RATE

    table = corpus / "test.tsv"
    if not table.is_file():
        raise SystemExit(f"{table} is missing: run `make corpus`")
    with table.open(encoding="utf-8", newline="") as rows:
        clips = [(corpus / "clips" / row["path"], row["sentence"].strip())
                 for row in csv.DictReader(rows, delimiter="\t", quoting=csv.QUOTE_NONE)]
    audio, reference = cache / "test_split.wav", cache / "test_split.txt"
    newest = max(path.stat().st_mtime for path in [table, *(clip for clip, _ in clips)])
    if not (audio.is_file() and reference.is_file() and audio.stat().st_mtime >= newest):
        pieces = []
        for index, (clip, _) in enumerate(clips):
            if index:
                pieces.append(np.zeros(round(PAUSES_SECONDS[index % len(PAUSES_SECONDS)] * SAMPLING_RATE),
                                       dtype=np.float32))
            pieces.append(load_audio(clip))
        cache.mkdir(parents=True, exist_ok=True)
        partial = audio.with_suffix(".partial.wav")
        sf.write(partial, np.concatenate(pieces), SAMPLING_RATE, subtype="PCM_16")
        reference.write_text("\n".join(sentence for _, sentence in clips) + "\n", encoding="utf-8")
        partial.replace(audio)
    return Recording("test-split", audio, reference)


RECORDINGS = {"long": long_example, "test-split": test_split_recording}
