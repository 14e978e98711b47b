"""Locations: atomic writes, and one line for every Hub failure."""

import os

import pytest

from whisper_gl import WhisperGLError, error_line
from whisper_gl.store import atomic_dir, atomic_write_text, check_replaceable, hub_call, resolve_model


def test_atomic_write_text_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "out" / "talk.srt"
    atomic_write_text(target, "one")
    assert target.read_text() == "one"

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "two")
    assert target.read_text() == "one" and sorted(p.name for p in target.parent.iterdir()) == ["talk.srt"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    with atomic_dir(tmp_path / "model") as folder:
        (folder / "config.json").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "model") as folder:
        (folder / "config.json").write_text("2")
        raise RuntimeError("killed")
    assert (tmp_path / "model" / "config.json").read_text() == "1" and len(list(tmp_path.iterdir())) == 1
    with atomic_dir(tmp_path / "model") as folder:  # a previous output is replaced
        (folder / "config.json").write_text("3")
    assert (tmp_path / "model" / "config.json").read_text() == "3"


def test_a_folder_that_is_not_an_output_is_never_replaced(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    with pytest.raises(WhisperGLError, match="not an output of whisper-gl"):
        check_replaceable(notes)
    with pytest.raises(WhisperGLError, match="not an output of whisper-gl"), atomic_dir(notes) as folder:
        (folder / "config.json").write_text("{}")
    assert (notes / "thesis.txt").read_text() == "years of work" and len(list(tmp_path.iterdir())) == 1
    check_replaceable(tmp_path / "new")  # absent and empty folders are fine
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")


class _Response:
    def __init__(self, status_code):
        self.status_code = status_code


class _HTTPError(Exception):
    def __init__(self, message, status_code):
        super().__init__(message)
        self.response = _Response(status_code)


def test_hub_call_turns_any_failure_into_one_line():
    with pytest.raises(WhisperGLError) as error:
        with hub_call("pushing x to me/x"):
            raise ConnectionError("Max retries exceeded\n  with url: https://huggingface.co (token hf_secret)")
    assert str(error.value) == "pushing x to me/x failed (Max retries exceeded)"
    with pytest.raises(WhisperGLError, match=r"failed \(Payment Required\); since July 2026 .* PRO"):
        with hub_call("creating the Space me/app"):
            raise _HTTPError("Payment Required", 402)
    with pytest.raises(WhisperGLError, match="write access"):
        with hub_call("uploading"):
            raise _HTTPError("Forbidden", 403)
    with pytest.raises(WhisperGLError, match="^mine$"):  # our own errors pass through unchanged
        with hub_call("uploading"):
            raise WhisperGLError("mine")


def test_error_line_takes_the_first_line_or_the_type():
    assert error_line(ValueError("\n  first\nsecond")) == "first"
    assert error_line(KeyError()) == "KeyError"
    assert error_line("") == "" and error_line("x" * 300) == "x" * 200


def test_unreachable_hub_model_names_the_offline_model(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WhisperGLError, match="fetching it from the Hugging Face Hub failed .*--model base$"):
        resolve_model("nobody/no-such-model")
