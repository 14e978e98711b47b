"""`whisper-gl transcribe PATH...`: many files, one engine, outputs that survive a crash."""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from whisper_gl.batch import plan, safe_name
from whisper_gl.cli import parse_config
from whisper_gl.jobs import LEDGER_NAME, SKIPPED_NAME, Summary, load_engine, printable, settings_fingerprint
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
    flags = ["--output-dir", str(out), "--format", "txt,srt,vtt,json,tsv", "--model", str(base_model_dir),
             "--beam-size", "1", "--temperatures", "0", "--word-timestamps", "--long-form", "batched"]
    run = transcribe(str(recordings), *flags)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert f"failed: {recordings / 'corrupt.wav'}: corrupt.wav: not an audio file" in run.stderr
    assert "transcribed 4 files," in run.stderr and "1 not audio or video; 1 failed" in run.stderr
    assert f"  skipped, not audio or video: {recordings / 'notes.wav.txt'}" in run.stderr  # named
    assert (out / SKIPPED_NAME).read_text().splitlines()[1:] == [f"{recordings / 'notes.wav.txt'}\tnot audio or video"]
    assert run.stderr.strip().splitlines()[-1] == "error: 1 of 5 inputs failed (listed above)"
    stems = ["short", "nested/clip", "nested/voice memo", "nested/deeper/_odd_name_"]
    for stem in stems:
        for suffix in ("txt", "srt", "vtt", "json", "tsv"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0, (stem, suffix)
    assert not (out / "corrupt.txt").exists() and not list(out.rglob("*.tmp"))
    transcript = json.loads((out / "short.json").read_text())
    assert transcript["text"] == (out / "short.txt").read_text().strip()
    assert transcript["segments"][0]["words"] and transcript["model"] == str(base_model_dir)
    header, *rows = (out / "short.tsv").read_text().splitlines()
    assert header == "start\tend\ttext" and [row.split("\t") for row in rows] == [
        [str(round(s["start"] * 1000)), str(round(s["end"] * 1000)), s["text"]] for s in transcript["segments"]]
    assert (out / "nested/voice memo.txt").read_text() == (out / "short.txt").read_text()  # the same bytes
    # The video's sound track is short.mp3 re-encoded in AAC: other samples, so other words from the
    # untuned base (how many depends on the CPU). Its text is the engine's own transcript of them.
    engine = load_engine(parse_config(TranscribeConfig, "transcribe", [str(recordings), *flags]))
    assert (out / "nested/clip.txt").read_text().strip() == engine.transcribe(recordings / "nested/clip.mp4").text

    written = {path: path.stat().st_mtime_ns for path in out.rglob("*.*")}
    again = transcribe(str(recordings), *flags)
    assert again.returncode == 2 and "transcribed 0 files," in again.stderr
    assert "skipped 4 already done" in again.stderr
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.*")} == written

    (out / "short.srt").unlink()  # an output gone: that input is done again, the others not
    lines = len((out / LEDGER_NAME).read_text().splitlines())
    again = transcribe(str(recordings), *flags)
    assert "transcribed 1 file," in again.stderr and "skipped 3 already done" in again.stderr
    assert (out / "short.srt").is_file() and len((out / LEDGER_NAME).read_text().splitlines()) == lines + 1


@pytest.mark.slow
def test_one_file_prints_its_transcript_and_bad_paths_are_one_line(base_model_dir, examples_dir, tmp_path):
    run = transcribe(str(examples_dir / "short.mp3"), "--model", str(base_model_dir), "--beam-size", "1",
                     "--vtt", str(tmp_path / "short.vtt"), "--highlight-words", "--format", "tsv")
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.splitlines()  # the one format asked for, on stdout
    assert header == "start\tend\ttext" and rows and all(len(row.split("\t")) == 3 for row in rows)
    assert "RTF" in run.stderr and "model loaded in" in run.stderr
    assert re.search(r"\| (1 segment|(0|[2-9]|\d\d+) segments)\]", run.stderr), run.stderr  # "1 segments" never
    assert "<u>" in (tmp_path / "short.vtt").read_text()
    for args, message in (([str(examples_dir)], "a folder or a glob need --output-dir"),
                          ([str(examples_dir / "*.mp3")], "a folder or a glob need --output-dir"),
                          ([str(examples_dir), "--output-dir", str(tmp_path), "--srt", "x.srt"], "--srt and --vtt"),
                          ([str(examples_dir / "short.mp3"), "--format", "txt,srt"], "prints one format"),
                          # before the model loads, with the full path, and for an example the command that makes it
                          ([str(tmp_path / "gone" / "long.mp3")], f"{tmp_path / 'gone' / 'long.mp3'}: missing file "
                           "(the example clips are made by `whisper-gl examples`")):
        run = transcribe(*args)
        assert run.returncode == 2 and message in run.stderr.strip().splitlines()[-1], run.stderr



@pytest.fixture
def broken_folder(examples_dir, tmp_path) -> Path:
    """What a folder of recordings holds after a bad day: broken recordings of each kind (they claim
    to be media by name or by header), other files, and a name with a newline that tries to forge
    a line of the report."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    shutil.copy(examples_dir / "short.mp3", folder / "good.mp3")
    (folder / "riff-then-junk.wav").write_bytes(b"RIFF" + struct.pack("<I", 10_000) + b"WAVE" + os.urandom(4000))
    (folder / "no-extension").write_bytes(b"RIFF" + struct.pack("<I", 10_000) + b"WAVE" + b"\x00" * 400)  # by header
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "text.wav").write_text("not audio, whatever the name says\n" * 20)
    (folder / "system.wav").symlink_to(os.__file__)  # a symlink to a system file
    (folder / "nowhere.flac").symlink_to(tmp_path / "gone")
    os.mkfifo(folder / "pipe.mp3")  # opening it would block for ever
    (folder / "device").symlink_to(os.devnull)
    (folder / "evil\nfailed: forged.wav").write_text("a name with a newline in it\n")
    (folder / "notes.txt").write_text("shopping list\n")
    return folder


BROKEN = {"riff-then-junk.wav": "not an audio file / could not decode", "no-extension": "not an audio file / could "
          "not decode", "empty.mp3": "empty file", "text.wav": "not an audio file / could not decode",
          "system.wav": "not an audio file / could not decode", "nowhere.flac": "missing file (a link to nothing)",
          "pipe.mp3": "not a regular file", "evil\nfailed: forged.wav": "not an audio file / could not decode"}


def test_plan_fails_broken_recordings_by_name_and_names_what_it_skips(broken_folder):
    found = plan((str(broken_folder),))
    assert [job.source.name for job in found.jobs] == ["good.mp3"]
    assert {Path(path).name: reason for path, reason in found.failures} == BROKEN
    assert sorted(Path(path).name for path, _ in found.skipped) == ["device", "notes.txt"]


def test_every_name_printed_is_escaped():
    summary = Summary(failures=[("a/evil\nfailed: forged.wav", "evil\nfailed: forged.wav: not an audio file")],
                      skipped=[("a/\x1b[2Jwiped.txt\u202etxt.exe", "not audio or video")])
    lines = summary.lines()
    assert not any(line.startswith("failed: forged") or line.startswith("  failed: forged") for line in lines)
    assert all(character.isprintable() for line in lines for character in line)
    assert lines[1] == "  failed: a/evil\\nfailed: forged.wav: evil\\nfailed: forged.wav: not an audio file"
    assert printable("ñandú\t\x07") == "ñandú\\t\\x07"


def test_the_command_fails_on_broken_recordings_and_lists_the_skipped(broken_folder, tmp_path):
    """No model is loaded when nothing decodable is left: only the broken files and the others."""
    (broken_folder / "good.mp3").unlink()
    out = tmp_path / "out"
    run = transcribe(str(broken_folder), "--output-dir", str(out))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    for name, reason in BROKEN.items():
        assert f"failed: {printable(str(broken_folder / name))}: {reason}" in lines, (name, run.stderr)
    assert not any(line.lstrip().startswith("failed: forged") for line in lines)  # nothing forged
    assert "transcribed 0 files, 0.00 h of audio in 0.0 s (RTF 0.000); skipped 0 already done and 2 not audio " \
           "or video; 8 failed" in lines
    assert f"  skipped, not audio or video: {broken_folder / 'notes.txt'}" in lines
    assert (out / SKIPPED_NAME).read_text().splitlines() == [
        "path\treason", f"{broken_folder / 'device'}\tnot audio or video", f"{broken_folder / 'notes.txt'}\tnot audio or video"]
    assert lines[-1] == "error: 8 of 8 inputs failed (listed above)"
