"""The manual: the MkDocs site builds with --strict, the README's links land, and the
architecture page's "add one" examples work as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
ARCHITECTURE = REPO_ROOT / "docs/architecture.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as `make docs` builds it, into a temporary folder."""
    folder = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr  # strict: any warning (link, anchor, nav) fails
    return folder


def test_the_site_builds_strictly_with_every_page_in_the_navigation(site):
    pages = sorted(path.relative_to(REPO_ROOT / "docs").with_suffix("").as_posix()
                   for path in (REPO_ROOT / "docs").glob("*.md"))
    for page in pages:
        html = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert html.is_file(), f"docs/{page}.md was not built"


def test_the_readme_is_a_front_page_whose_links_land(site):
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for command in ("make demo", "make test", "make test-fast"):
        assert command in text
    assert "<!-- quickstart:begin -->" in text and "<!-- quickstart:end -->" in text
    links = re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#([\w-]+))?\)", text)
    assert links
    for page, anchor in links:
        assert (REPO_ROOT / page).is_file(), page
        if anchor:
            name = Path(page).stem
            html = site / ("index.html" if name == "index" else f"{name}/index.html")
            assert f'id="{anchor}"' in html.read_text(encoding="utf-8"), f"{page}#{anchor}"


def test_every_module_of_the_package_is_on_the_architecture_page():
    page = ARCHITECTURE.read_text(encoding="utf-8")
    modules = [path.stem for path in (REPO_ROOT / "whisper_gl").glob("*.py") if path.stem != "__init__"]
    missing = [module for module in modules if f"`{module}`" not in page]
    assert not missing, f"not on docs/architecture.md: {missing}"


# --- the "add one" examples of docs/architecture.md, run as printed --------------------------------

def example(heading: str) -> str:
    """The Python code block under `### heading` on the architecture page."""
    section = ARCHITECTURE.read_text(encoding="utf-8").split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_in(module, code: str) -> None:
    """Execute `code` as if written at the end of `module`'s file (in a copy of its namespace:
    the registry it writes to is the module's, which each test replaces with a copy)."""
    exec(compile(code, str(ARCHITECTURE), "exec"), dict(vars(module)))


def test_the_backend_example_transcribes_through_the_engine(monkeypatch, tmp_path):
    from whisper_gl import backends
    from whisper_gl.transcribe import Transcriber

    monkeypatch.setattr(backends, "BACKENDS", dict(backends.BACKENDS))
    run_in(backends, example("Add a backend"))
    for name in ("config.json", "clock.json"):  # config.json: what makes a folder a model (store.resolve_model)
        (tmp_path / name).write_text("{}")
    assert backends.BACKENDS["clock"].suits(tmp_path, None)
    engine = Transcriber(str(tmp_path), backend="clock", require_speech=False)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32_000) / 16_000)).astype(np.float32)
    result = engine.transcribe(tone)
    assert result.backend == "clock" and result.text.strip() == "2.0 seconds"


def test_the_source_example_reads_its_tsv(monkeypatch, tmp_path):
    from whisper_gl import sources

    monkeypatch.setattr(sources, "SOURCES", dict(sources.SOURCES))
    run_in(sources, example("Add a data source"))
    listing = tmp_path / "clips.tsv"
    listing.write_text("split\tpath\tsentence\ntrain\ta.mp3\tBos días.\ntest\tb.mp3\tAta logo.\n"
                       "train\tc.mp3\tChove.\n", encoding="utf-8")
    loaded = sources.load_source(str(listing), {"train": "train", "test": "test"}, optional=())
    assert [row["sentence"] for row in loaded["train"]] == ["Bos días.", "Chove."]
    assert loaded["test"][0]["audio"]["path"] == str(tmp_path / "b.mp3")
    assert "a .tsv file with columns split, path, sentence" in sources.described_sources()


def test_the_format_example_renders_lrc(monkeypatch):
    from whisper_gl import transcript
    from whisper_gl.transcript import Segment, Transcription

    monkeypatch.setattr(transcript, "FORMATS", dict(transcript.FORMATS))
    run_in(transcript, example("Add an output format"))
    result = Transcription("Bos días. Ata logo.", [Segment(1.5, 3.0, " Bos días."), Segment(61.25, 63.0, " Ata logo.")],
                           "gl", 63.0, 0.1, "clock", "m")
    assert result.render("lrc") == "[00:01.50]Bos días.\n[01:01.25]Ata logo.\n"


def defined_names(source: Path) -> set[str]:
    """Names a module defines or imports at its top level (read from the source, no import)."""
    import ast

    names = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def test_every_name_the_pages_cite_exists_in_the_package():
    """`whisper_gl.X` and `whisper_gl.module.name` in the pages and the README: X is a module of the
    package or a name of whisper_gl itself, and the name is defined at the module's top level."""
    pages = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    cited = {match for page in pages for match in re.findall(r"whisper_gl\.(\w+)(?:\.(\w+))?", page.read_text("utf-8"))}
    assert cited
    package = defined_names(REPO_ROOT / "whisper_gl/__init__.py")
    for module, name in sorted(cited):
        source = REPO_ROOT / "whisper_gl" / f"{module}.py"
        if not source.is_file():
            assert module in package and not name, f"whisper_gl.{module} is cited but does not exist"
            continue
        assert not name or name in defined_names(source), f"whisper_gl.{module}.{name} is cited but not defined"
