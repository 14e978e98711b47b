import csv
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from whisper_gl import WhisperGLError
from whisper_gl import sample_corpus
from whisper_gl.sample_corpus import build_corpus, read_sentences

# Written out here (not imported) so a change in the module cannot silently pass.
COMMON_VOICE_COLUMNS = [
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
    "down_votes", "age", "gender", "accents", "variant", "locale", "segment",
]


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return reader.fieldnames, list(reader)


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels:format=duration",
         "-of", "json", str(path)], capture_output=True, check=True, text=True).stdout
    info = json.loads(out)
    return {**info["streams"][0], "duration": float(info["format"]["duration"])}


@pytest.fixture(scope="module")
def splits(sample_corpus_dir):
    return {name: read_rows(sample_corpus_dir / f"{name}.tsv") for name in ("train", "dev", "test", "validated")}


def test_common_voice_layout_and_columns(sample_corpus_dir, splits):
    assert (sample_corpus_dir / "clips").is_dir()
    for name, (columns, rows) in splits.items():
        assert columns == COMMON_VOICE_COLUMNS, name
        assert rows, name
        for row in rows:
            assert (sample_corpus_dir / "clips" / row["path"]).is_file()
            assert row["path"].startswith("common_voice_gl_") and row["path"].endswith(".mp3")
            assert row["locale"] == "gl"
            assert len(row["client_id"]) == 128 and int(row["client_id"], 16) >= 0
            assert row["sentence_id"] == hashlib.sha256(row["sentence"].encode()).hexdigest()
    every_split = [row for name in ("train", "dev", "test") for row in splits[name][1]]
    assert sorted(r["path"] for r in splits["validated"][1]) == sorted(r["path"] for r in every_split)
    assert len({r["path"] for r in every_split}) == len(every_split)


def test_sizes_and_speakers(splits):
    train, dev, test = (splits[name][1] for name in ("train", "dev", "test"))
    assert len({r["sentence"] for r in train + dev + test}) >= 80
    # Every train sentence is read by two different speakers.
    readers = {}
    for row in train:
        readers.setdefault(row["sentence"], set()).add(row["client_id"])
    assert all(len(ids) == 2 for ids in readers.values())
    # At least one test speaker never appears in train: measures generalisation to a new voice.
    assert {r["client_id"] for r in test} - {r["client_id"] for r in train}


def test_splits_are_disjoint_by_sentence(splits):
    sentences = {name: {row["sentence"] for row in splits[name][1]} for name in ("train", "dev", "test")}
    assert not sentences["train"] & sentences["dev"]
    assert not sentences["train"] & sentences["test"]
    assert not sentences["dev"] & sentences["test"]


def test_clips_are_48k_mono_mp3_of_plausible_length(sample_corpus_dir, splits):
    rows = splits["validated"][1][::7]  # a spread sample keeps ffprobe time low
    for row in rows:
        info = probe(sample_corpus_dir / "clips" / row["path"])
        assert (info["codec_name"], int(info["sample_rate"]), info["channels"]) == ("mp3", 48_000, 1)
        words = len(row["sentence"].split())
        # espeak speaks ~140-160 words/min; plus ~0.6 s of padding silence.
        assert 0.15 * words + 0.5 < info["duration"] < 0.8 * words + 2.0, (row["sentence"], info["duration"])


def test_examples(examples_dir, sample_corpus_dir, splits):
    held_out = [row["sentence"] for name in ("dev", "test") for row in splits[name][1]]
    assert (examples_dir / "short.txt").read_text(encoding="utf-8").strip() in held_out
    long_lines = (examples_dir / "long.txt").read_text(encoding="utf-8").splitlines()
    assert set(held_out) <= set(long_lines)
    long = probe(examples_dir / "long.mp3")
    assert (long["codec_name"], long["channels"]) == ("mp3", 1)
    assert 100 < long["duration"] < 180
    assert 1 < probe(examples_dir / "short.mp3")["duration"] < 10


def write_sentences(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("split\tsentence\n" + "".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("rows, message", [
    ([("train", "Bos días."), ("test", "Bos días.")], "also in train"),
    ([("validation", "Bos días.")], "is not one of"),
    ([("train", " ")], "empty sentence"),
])
def test_bad_sentences_file(tmp_path, rows, message):
    with pytest.raises(WhisperGLError, match=message):
        read_sentences(write_sentences(tmp_path / "s.tsv", rows))


def test_missing_sentences_file(tmp_path):
    with pytest.raises(WhisperGLError, match="not found"):
        read_sentences(tmp_path / "nope.tsv")


def test_build_skips_when_complete_and_is_atomic(tmp_path, monkeypatch):
    sentences = write_sentences(tmp_path / "s.tsv", [("train", "Bos días."), ("test", "Ata logo.")])
    out = build_corpus(tmp_path / "gl", sentences, workers=2)
    assert len(list((out / "clips").glob("*.mp3"))) == 3  # 2 train readers + 1 test
    stamp = (out / "train.tsv").stat().st_mtime_ns
    build_corpus(out, sentences)  # complete: nothing rewritten
    assert (out / "train.tsv").stat().st_mtime_ns == stamp

    # A failure while speaking leaves the previous corpus untouched and no temp folder behind.
    def broken(*args):
        raise WhisperGLError("espeak-ng failed: boom")

    monkeypatch.setattr(sample_corpus, "speak", broken)
    with pytest.raises(WhisperGLError, match="boom"):
        build_corpus(out, sentences, force=True)
    assert (out / "train.tsv").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gl", "s.tsv"]

    # A missing clip makes the corpus incomplete: it is rebuilt.
    monkeypatch.undo()
    next((out / "clips").glob("*.mp3")).unlink()
    build_corpus(out, sentences)
    assert len(list((out / "clips").glob("*.mp3"))) == 3
