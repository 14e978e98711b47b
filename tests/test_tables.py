"""scripts/tables.py: every table of numbers in README.md and docs/ is what the committed JSON
of its run gives, so a retyped or stale number fails here."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts/tables.py"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tables"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["tables"]


def test_every_committed_table_is_what_its_json_gives(tables):
    assert tables.regions_used(), "no generated table found"
    assert tables.stale_regions() == [], "run: python scripts/tables.py (make tables)"


def test_the_check_command_agrees():
    checked = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0, checked.stderr


def test_a_retyped_number_is_caught_and_rewritten(tables):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    region = next(tables.REGION.finditer(readme))
    number = re.search(r"\d+\.\d", region["body"])
    retyped = readme[:region.start("body") + number.start()] + "12.3" + readme[region.start("body") + number.end():]
    assert retyped != readme
    assert tables.rewrite(retyped) == readme


def test_every_registered_table_has_its_json_and_a_page(tables):
    used = tables.regions_used()
    for name, entry in tables.TABLES.items():
        assert (REPO_ROOT / entry.source).is_file(), f"{name}: {entry.source} missing"
        assert name in used, f"{name} is registered but on no page"


def test_one_recording_gets_a_score_without_an_interval(tables):
    one = {"wer": 43.43, "wer_low": 43.43, "wer_high": 43.43, "clips": 1}
    many = {"wer": 45.6, "wer_low": 34.34, "wer_high": 57.98, "clips": 20}
    assert tables.score(one, "wer") == "43.4"
    assert tables.score(many, "wer") == "45.6 (34.3–58.0)"
    zero_width = re.compile(r"(\d+(?:\.\d+)?) \(\1–\1\)")
    for page in tables.page_paths():
        assert not zero_width.search(page.read_text(encoding="utf-8")), f"a zero-width interval in {page}"


def test_a_region_the_script_cannot_fill_is_one_clear_error(tables):
    with pytest.raises(tables.TableError, match="unknown table 'nope'"):
        tables.rewrite("<!-- table:nope -->\n<!-- /table -->\n")
    with pytest.raises(tables.TableError, match="without its"):
        tables.rewrite("<!-- table:headline -->\nno end\n")
    example = "    <!-- table:headline -->\n    <!-- /table -->\n`<!-- table:x -->`\n"  # indented or inline: text
    assert tables.rewrite(example) == example


def _verb_paths() -> list[tuple[str, ...]]:
    from whisper_gl.cli import COMMANDS, Group

    return [(command.name, verb.name) if isinstance(command, Group) else (command.name,)
            for command in COMMANDS for verb in (command.verbs if isinstance(command, Group) else (command,))]


def test_every_verb_has_its_flags_table_in_the_manual(tables):
    used = tables.regions_used()
    missing = [" ".join(path) for path in _verb_paths() if "options." + ".".join(path) not in used]
    assert missing == [], "add <!-- table:options.VERB --> <!-- /table --> to a docs page"


def test_a_flags_table_is_the_verbs_help_without_this_shells_environment(tables, monkeypatch):
    """The table lists every flag --help lists, with defaults that read the same on any machine."""
    from whisper_gl.cli import build_parser

    monkeypatch.setenv("WHISPER_GL_HOME", "/somewhere/else")
    monkeypatch.setenv("WHISPER_GL_MAX_MINUTES", "5")
    rendered = tables.render("options.app.youtube")
    parser = build_parser()._subparsers._group_actions[0].choices["app"]._subparsers._group_actions[0].choices["youtube"]
    flags = {option for action in parser._actions for option in action.option_strings if option.startswith("--")}
    flags -= {"--help"}
    assert flags and all(f"`{flag}" in rendered or f" / {flag}`" in rendered for flag in flags)
    assert "$WHISPER_GL_HOME" not in rendered or "/somewhere/else" not in rendered
    assert "| `--max-minutes` | `30` |" in rendered  # the built-in default, not this shell's 5
    with pytest.raises(tables.TableError, match="no verb"):
        tables.render("options.app.radio")
