"""`whisper-gl transcribe PATH...`: many files, one engine, outputs that survive a crash."""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from whisper_gl.batch import LEDGER_NAME, load_engine, plan, safe_name, settings_fingerprint
from whisper_gl.cli import parse_config
from whisper_gl.config import DecodingOptions, TranscribeConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def wav_header_without_data() -> bytes:
    """A WAV file that promises 16-bit mono samples and holds none: media by its header, undecodable."""
    return (b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
            + b"data" + struct.pack("<I", 0))


@pytest.fixture(scope="module")
def recordings(examples_dir, tmp_path_factory) -> Path:
    """good files, a video, a nested subfolder with an odd name, a corrupt WAV and a text file."""
    folder = tmp_path_factory.mktemp("recordings")
    short = examples_dir / "short.mp3"
    shutil.copy(short, folder / "short.mp3")
    (folder / "nested/deeper").mkdir(parents=True)
    ffmpeg("-i", str(short), "-ar", "44100", "-ac", "2", str(folder / 'nested/deeper/"odd:name".wav'))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-i", str(short), "-shortest", "-c:v", "libx264",
           "-c:a", "aac", str(folder / "nested/clip.mp4"))
    shutil.copy(short, folder / "nested/voice memo")  # no extension: found by content
    (folder / "corrupt.wav").write_bytes(wav_header_without_data())
    (folder / "notes.wav.txt").write_text("not audio, whatever the name says\n" * 20)
    return folder


def test_plan_finds_media_by_content_mirrors_folders_and_makes_names_safe(recordings, tmp_path):
    found = plan((str(recordings),))
    outputs = {str(job.output): job.source.name for job in found.jobs}
    assert outputs == {"corrupt": "corrupt.wav", "short": "short.mp3", "nested/clip": "clip.mp4",
                       "nested/voice memo": "voice memo", "nested/deeper/_odd_name_": '"odd:name".wav'}
    assert found.not_media == 1 and found.failures == []
    # a named file keeps only its name; a second input with the same name is numbered; globs
    # expand from their literal folder; missing paths and empty globs are failures
    found = plan((str(recordings / "short.mp3"), str(recordings / "**/*.mp4"), str(recordings / "*.mp3"),
                  str(tmp_path / "gone.mp3"), str(tmp_path / "*.ogg")))
    assert [str(job.output) for job in found.jobs] == ["short", "nested/clip", "short-2"]
    assert found.failures == [(str(tmp_path / "gone.mp3"), "missing file"), (str(tmp_path / "*.ogg"), "no file matches")]
    # the output folder inside an input folder is not searched
    (recordings / "out").mkdir()
    shutil.copy(recordings / "short.mp3", recordings / "out/old.mp3")
    assert "out/old" not in {str(job.output) for job in plan((str(recordings),), recordings / "out").jobs}
    shutil.rmtree(recordings / "out")


def test_safe_names():
    assert safe_name("../..") == "_" and safe_name(".hidden") == "hidden" and safe_name("a/b\\c") == "a_b_c"
    assert safe_name("tab\there?.") == "tab_here_" and safe_name("  ") == "_"
    assert len(safe_name("ñ" * 300).encode()) <= 200 and safe_name("ñ" * 300) == "ñ" * 100


def test_the_fingerprint_changes_with_the_model_files_and_the_options(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights")
    engine = SimpleNamespace(folder=tmp_path, backend="ctranslate2", options=SimpleNamespace(compute_type="int8"),
                             decoding=DecodingOptions())
    config = TranscribeConfig(paths=("a.mp3",))
    first = settings_fingerprint(engine, config)
    assert settings_fingerprint(engine, config) == first
    assert settings_fingerprint(SimpleNamespace(**{**vars(engine), "decoding": DecodingOptions(beam_size=1)}),
                                config) != first
    assert settings_fingerprint(engine, TranscribeConfig(paths=("a.mp3",), format=("json",))) != first
    os.utime(tmp_path / "model.bin", ns=(1, 1))  # retrained in place
    assert settings_fingerprint(engine, config) != first


def transcribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "whisper_gl", "transcribe", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=600)


@pytest.mark.slow
def test_a_folder_run_writes_every_output_reports_the_failure_and_a_rerun_skips_what_is_done(
        recordings, base_model_dir, tmp_path):
    out = tmp_path / "out"
    flags = ["--output-dir", str(out), "--format", "txt,srt,vtt,json", "--model", str(base_model_dir),
             "--beam-size", "1", "--temperatures", "0", "--word-timestamps", "--long-form", "batched"]
    run = transcribe(str(recordings), *flags)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert f"failed: {recordings / 'corrupt.wav'}: corrupt.wav: not an audio file" in run.stderr
    assert "transcribed 4 file(s)" in run.stderr and "1 that are not audio or video; 1 failed" in run.stderr
    assert run.stderr.strip().splitlines()[-1] == "error: 1 of 5 input(s) failed (listed above)"
    stems = ["short", "nested/clip", "nested/voice memo", "nested/deeper/_odd_name_"]
    for stem in stems:
        for suffix in ("txt", "srt", "vtt", "json"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0, (stem, suffix)
    assert not (out / "corrupt.txt").exists() and not list(out.rglob("*.tmp"))
    transcript = json.loads((out / "short.json").read_text())
    assert transcript["text"] == (out / "short.txt").read_text().strip()
    assert transcript["segments"][0]["words"] and transcript["model"] == str(base_model_dir)
    assert (out / "nested/voice memo.txt").read_text() == (out / "short.txt").read_text()  # the same bytes
    # The video's sound track is short.mp3 re-encoded in AAC: other samples, so other words from the
    # untuned base (how many depends on the CPU). Its text is the engine's own transcript of them.
    engine = load_engine(parse_config(TranscribeConfig, "transcribe", [str(recordings), *flags]))
    assert (out / "nested/clip.txt").read_text().strip() == engine.transcribe(recordings / "nested/clip.mp4").text

    written = {path: path.stat().st_mtime_ns for path in out.rglob("*.*")}
    again = transcribe(str(recordings), *flags)
    assert again.returncode == 2 and "transcribed 0 file(s)" in again.stderr
    assert "skipped 4 already done" in again.stderr
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.*")} == written

    (out / "short.srt").unlink()  # an output gone: that input is done again, the others not
    lines = len((out / LEDGER_NAME).read_text().splitlines())
    again = transcribe(str(recordings), *flags)
    assert "transcribed 1 file(s)" in again.stderr and "skipped 3 already done" in again.stderr
    assert (out / "short.srt").is_file() and len((out / LEDGER_NAME).read_text().splitlines()) == lines + 1


@pytest.mark.slow
def test_one_file_prints_its_transcript_and_bad_paths_are_one_line(base_model_dir, examples_dir, tmp_path):
    run = transcribe(str(examples_dir / "short.mp3"), "--model", str(base_model_dir), "--beam-size", "1",
                     "--vtt", str(tmp_path / "short.vtt"), "--highlight-words")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() and "RTF" in run.stderr
    assert "<u>" in (tmp_path / "short.vtt").read_text()
    for args, message in (([str(examples_dir)], "a folder or a glob need --output-dir"),
                          ([str(examples_dir / "*.mp3")], "a folder or a glob need --output-dir"),
                          ([str(examples_dir), "--output-dir", str(tmp_path), "--srt", "x.srt"], "--srt and --vtt")):
        run = transcribe(*args)
        assert run.returncode == 2 and message in run.stderr.strip().splitlines()[-1], run.stderr

