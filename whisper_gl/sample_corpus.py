"""The bundled sample corpus: our Galician sentences spoken by espeak-ng, in Common Voice's layout.

espeak-ng has no Galician voice, so Spanish and Portuguese voices with different variants,
speeds and pitches play the "speakers" (each with a stable fake `client_id`, like Common
Voice's hashed ids). The output is laid out exactly like a Common Voice release
(`clips/*.mp3` at 48 kHz mono, `train.tsv dev.tsv test.tsv validated.tsv` with its
columns), so the rest of the pipeline reads it through the same loader as the real thing.

    whisper-gl corpus [--output-dir DIR] [--examples-dir DIR] [--force]
    whisper-gl examples [--examples-dir DIR]

The corpus also comes with the examples (`whisper-gl examples` speaks only them): `short.mp3`
(one sentence) and `long.mp3` (about two minutes of sentences with pauses, one voice) with
their reference texts. By default both go into the whisper-gl home (whisper_gl.paths); the
sentences ship inside the package.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from . import WhisperGLError
from .config import ExamplesConfig, SampleCorpusConfig
from .store import atomic_dir

SPLITS = ("train", "dev", "test")
# Columns of every split TSV in Common Voice releases (v17+), in their order.
CV_COLUMNS = (
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
    "down_votes", "age", "gender", "accents", "variant", "locale", "segment",
)
LOCALE = "gl"
SAMPLE_RATE = 48_000  # Common Voice ships 48 kHz mono mp3
MP3_BITRATE = "64k"
# Common Voice clips start and end with a little silence (recorder latency, button press).
LEAD_IN_MS = 300
TAIL_SECONDS = 0.3
LONG_PAUSE_SECONDS = 0.8  # between sentences of long.mp3


@dataclass(frozen=True)
class Speaker:
    """One synthetic voice: an espeak-ng voice+variant at a speed (words/min) and pitch (0-99)."""

    name: str
    voice: str
    speed: int
    pitch: int
    gender: str  # Common Voice's labels
    age: str
    accent: str

    @property
    def client_id(self) -> str:
        # Common Voice publishes a sha512 hex digest per contributor; ours is stable across runs.
        return hashlib.sha512(f"whisper-gl-sample/{self.name}".encode()).hexdigest()


TRAIN_SPEAKERS = (
    Speaker("lucia", "es+f3", 150, 65, "female_feminine", "twenties", "Español de España"),
    Speaker("manuel", "es+m3", 160, 40, "male_masculine", "fifties", "Español de España"),
    Speaker("rosa", "pt+f2", 145, 70, "female_feminine", "thirties", "Português de Portugal"),
    Speaker("xoan", "pt-br+m1", 140, 45, "male_masculine", "forties", "Português do Brasil"),
)
# Reads half of the test set and nothing else: measures generalisation to a new voice.
UNSEEN_SPEAKER = Speaker("carme", "es-419+f4", 155, 55, "female_feminine", "sixties", "Español de América")
EXAMPLES_SPEAKER = UNSEEN_SPEAKER


@dataclass(frozen=True)
class Clip:
    split: str
    sentence: str
    speaker: Speaker
    path: str  # relative to clips/, as in Common Voice

    def row(self) -> dict[str, str]:
        """This clip as a row of a Common Voice split TSV."""
        return {
            "client_id": self.speaker.client_id,
            "path": self.path,
            "sentence_id": hashlib.sha256(self.sentence.encode()).hexdigest(),
            "sentence": self.sentence,
            "sentence_domain": "",
            "up_votes": "2",
            "down_votes": "0",
            "age": self.speaker.age,
            "gender": self.speaker.gender,
            "accents": self.speaker.accent,
            "variant": "",
            "locale": LOCALE,
            "segment": "",
        }


def read_sentences(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(split, sentence) pairs from the sentences TSV; a dev/test sentence must not be in train."""
    path = Path(path)
    if not path.is_file():
        raise WhisperGLError(f"sentences file {path.absolute()} not found")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not {"split", "sentence"} <= set(reader.fieldnames or ()):
            raise WhisperGLError(f"'{path}' must have the columns `split` and `sentence`")
        pairs = [(row["split"].strip(), (row["sentence"] or "").strip()) for row in reader]
    for line, (split, sentence) in enumerate(pairs, start=2):
        if split not in SPLITS:
            raise WhisperGLError(f"{path}:{line}: split '{split}' is not one of {', '.join(SPLITS)}")
        if not sentence:
            raise WhisperGLError(f"{path}:{line}: empty sentence")
    train = {sentence for split, sentence in pairs if split == "train"}
    leaked = [sentence for split, sentence in pairs if split != "train" and sentence in train]
    if leaked:
        raise WhisperGLError(f"{path}: dev/test sentences also in train: {leaked[:3]}")
    return pairs


def plan_clips(sentences: Iterable[tuple[str, str]]) -> list[Clip]:
    """Who reads what, deterministically.

    train: two different training speakers per sentence; dev: one training speaker;
    test: alternately the unseen speaker and a training speaker.
    """
    clips: list[Clip] = []
    counts = dict.fromkeys(SPLITS, 0)

    def add(split: str, sentence: str, speaker: Speaker) -> None:
        clips.append(Clip(split, sentence, speaker, f"common_voice_{LOCALE}_{len(clips) + 1}.mp3"))

    for split, sentence in sentences:
        i = counts[split]
        counts[split] += 1
        n = len(TRAIN_SPEAKERS)
        if split == "train":
            add(split, sentence, TRAIN_SPEAKERS[i % n])
            add(split, sentence, TRAIN_SPEAKERS[(i + 1) % n])
        elif split == "dev":
            add(split, sentence, TRAIN_SPEAKERS[i % n])
        else:
            add(split, sentence, UNSEEN_SPEAKER if i % 2 == 0 else TRAIN_SPEAKERS[(i // 2) % n])
    return clips


def _tool(command: list[str], **kwargs) -> None:
    """Run espeak-ng/ffmpeg; a missing tool or a failure becomes one clear line."""
    try:
        done = subprocess.run(command, capture_output=True, **kwargs)
    except FileNotFoundError:
        raise WhisperGLError(f"{command[0]} is not installed: sudo apt-get install {command[0]} (Debian, Ubuntu; "
                             "in a checkout, scripts/setup.sh installs it)") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise WhisperGLError(f"{command[0]} failed: {reason[-1] if reason else f'exit code {done.returncode}'}")


def speak(sentence: str, speaker: Speaker, wav_path: Path) -> None:
    """espeak-ng -> 22.05 kHz 16-bit wav. Text goes through stdin (UTF-8), never the command line."""
    _tool(["espeak-ng", "-b", "1", "-v", speaker.voice, "-s", str(speaker.speed),
           "-p", str(speaker.pitch), "-w", str(wav_path)], input=sentence.encode())


def encode_mp3(wav_path: Path, mp3_path: Path, *, pad: bool = True) -> None:
    """48 kHz mono mp3, like Common Voice; `pad` adds its typical leading/trailing silence."""
    filters = ["-af", f"adelay={LEAD_IN_MS}:all=1,apad=pad_dur={TAIL_SECONDS}"] if pad else []
    _tool(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav_path), *filters,
           "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "libmp3lame", "-b:a", MP3_BITRATE, str(mp3_path)])


def write_tsv(path: Path, clips: Iterable[Clip]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CV_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(clip.row() for clip in clips)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def corpus_is_complete(output_dir: Path, clips: list[Clip]) -> bool:
    """True when every TSV lists exactly the planned clips and every clip file is there."""
    for split in (*SPLITS, "validated"):
        expected = [clip.row() for clip in clips if split in (clip.split, "validated")]
        tsv = output_dir / f"{split}.tsv"
        if not tsv.is_file() or read_tsv(tsv) != expected:
            return False
    return all((output_dir / "clips" / clip.path).is_file() for clip in clips)


def _parallel(function, items: list, workers: int, desc: str) -> list:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(tqdm(pool.map(function, items), total=len(items), desc=desc, unit="clip"))


def build_corpus(output_dir: str | os.PathLike, sentences_path: str | os.PathLike,
                 *, workers: int = 4, force: bool = False) -> Path:
    """Speak every planned clip into `output_dir` (atomically); skipped when already complete."""
    output_dir = Path(output_dir)
    clips = plan_clips(read_sentences(sentences_path))
    if not force and corpus_is_complete(output_dir, clips):
        print(f"sample corpus: {output_dir} is complete ({len(clips)} clips), skipped (--force rebuilds)")
        return output_dir
    with atomic_dir(output_dir) as tmp, tempfile.TemporaryDirectory(prefix="wavs-", dir=tmp) as wavs:
        (tmp / "clips").mkdir()

        def make(clip: Clip) -> None:
            wav = Path(wavs) / f"{clip.path}.wav"
            speak(clip.sentence, clip.speaker, wav)
            encode_mp3(wav, tmp / "clips" / clip.path)
            wav.unlink()

        _parallel(make, clips, workers, "speaking clips")
        for split in SPLITS:
            write_tsv(tmp / f"{split}.tsv", (clip for clip in clips if clip.split == split))
        write_tsv(tmp / "validated.tsv", clips)  # in Common Voice, validated.tsv holds every split
    counts = ", ".join(f"{split} {sum(clip.split == split for clip in clips)}" for split in SPLITS)
    print(f"sample corpus: {len(clips)} clips ({counts}) written to {output_dir}")
    return output_dir


def _examples_plan(sentences: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """The short example's sentence, and the long example's candidates (dev/test first: unseen in training)."""
    held_out = [sentence for split, sentence in sentences if split != "train"]
    train = [sentence for split, sentence in sentences if split == "train"]
    return held_out[0], held_out + train


def examples_are_complete(examples_dir: Path, sentences: list[tuple[str, str]]) -> bool:
    short_sentence, candidates = _examples_plan(sentences)
    files = [examples_dir / name for name in ("short.mp3", "short.txt", "long.mp3", "long.txt")]
    if not all(path.is_file() for path in files):
        return False
    long_lines = (examples_dir / "long.txt").read_text(encoding="utf-8").splitlines()
    return ((examples_dir / "short.txt").read_text(encoding="utf-8").strip() == short_sentence
            and bool(long_lines) and long_lines == candidates[:len(long_lines)])


def build_examples(examples_dir: str | os.PathLike, sentences_path: str | os.PathLike, *,
                   long_seconds: float = 120.0, workers: int = 4, force: bool = False) -> Path:
    """short.mp3/.txt and long.mp3/.txt, one voice; each file replaced atomically."""
    examples_dir = Path(examples_dir)
    sentences = read_sentences(sentences_path)
    if not force and examples_are_complete(examples_dir, sentences):
        print(f"examples: {examples_dir} is complete, skipped (--force rebuilds)")
        return examples_dir
    short_sentence, candidates = _examples_plan(sentences)
    examples_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".examples-", dir=examples_dir) as tmp:
        tmp = Path(tmp)
        wavs = [tmp / f"sentence_{i}.wav" for i in range(len(candidates))]
        _parallel(lambda i: speak(candidates[i], EXAMPLES_SPEAKER, wavs[i]), list(range(len(candidates))),
                  workers, "speaking examples")
        # Take sentences (with pauses) until the target length is reached.
        pieces, chosen, seconds, rate = [], [], 0.0, None
        for sentence, wav in zip(candidates, wavs):
            audio, rate = sf.read(wav, dtype="int16")
            pieces += [audio, np.zeros(int(LONG_PAUSE_SECONDS * rate), dtype=np.int16)]
            chosen.append(sentence)
            seconds += len(audio) / rate + LONG_PAUSE_SECONDS
            if seconds >= long_seconds:
                break
        sf.write(tmp / "long.wav", np.concatenate(pieces), rate)
        encode_mp3(tmp / "long.wav", tmp / "long.mp3")
        encode_mp3(wavs[0], tmp / "short.mp3")
        (tmp / "short.txt").write_text(short_sentence + "\n", encoding="utf-8")
        (tmp / "long.txt").write_text("\n".join(chosen) + "\n", encoding="utf-8")
        for name in ("short.mp3", "short.txt", "long.mp3", "long.txt"):
            os.replace(tmp / name, examples_dir / name)
    print(f"examples: short.mp3 and long.mp3 ({seconds:.0f} s, {len(chosen)} sentences) in {examples_dir}")
    return examples_dir


def run(config: SampleCorpusConfig) -> Path:
    """`whisper-gl corpus`: the corpus and the examples, each skipped when complete."""
    build_corpus(config.output_dir, config.sentences, workers=config.workers, force=config.force)
    run_examples(config)
    return Path(config.output_dir)


def run_examples(config: ExamplesConfig) -> Path:
    """`whisper-gl examples`: the two example recordings (skipped when complete), and where they are."""
    folder = build_examples(config.examples_dir, config.sentences, long_seconds=config.long_example_seconds,
                            workers=config.workers, force=config.force).absolute()
    for name in ("short", "long"):
        print(f"  {folder / f'{name}.mp3'}  (transcript: {name}.txt)")
    print(f"try: whisper-gl transcribe {folder / 'short.mp3'}")
    return folder
