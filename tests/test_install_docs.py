"""docs/install.md: its sizes table is written from the benchmark's JSON, and its quickstart is the README's."""

import importlib.util
import json
import re
from pathlib import Path

from tests.test_quickstart import quickstart_commands

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_install", REPO / "bench" / "bench_install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sizes_table_is_the_generators_output_on_the_committed_json():
    bench = _bench()
    measured = json.loads(bench.JSON_PATH.read_text(encoding="utf-8"))
    page = bench.PAGE.read_text(encoding="utf-8")
    assert bench.render_page(page, measured) == page, "run: .venv/bin/python bench/bench_install.py --render-only"
    assert [row["install"] for row in measured["installs"]] == [install[0] for install in bench.INSTALLS]
    assert all(row["download_bytes"] > 0 and row["venv_bytes"] > row["download_bytes"] for row in measured["installs"])


def test_the_page_shows_the_readme_quickstart_and_the_cpu_torch_line():
    page = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    commands = {re.sub(r"\s+#.*", "", line) for line in page.splitlines()}
    assert all(re.sub(r"\s+#.*", "", line) in commands for line in quickstart_commands())
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in commands
