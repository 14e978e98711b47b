"""The architecture contract (pyproject.toml, [tool.importlinter]): data -> engine -> serving ->
command line, nothing imports the command line, no import cycles. Checked by import-linter on the
package as it is, and on a copy with a cycle added, to show the contract bites."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under `root` (its pyproject.toml's contracts)."""
    return subprocess.run([str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_package_keeps_its_layers_and_has_no_cycle():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def package_copy(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(REPO_ROOT / "whisper_gl", root / "whisper_gl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def add_import(module: Path, line: str) -> None:
    """`line` as a lazy import at the end of `module` (a function-level import is an import too)."""
    module.write_text(module.read_text() + f"\n\ndef _added():\n    {line}\n")


def test_a_cycle_between_the_engine_and_live_captions_breaks_the_contract(tmp_path):
    # The circle this contract was written against: the engine making live transcripts, which
    # import the engine back (both in the engine layer, so only the cycle contract sees it).
    root = package_copy(tmp_path)
    add_import(root / "whisper_gl" / "transcribe.py", "from .streaming import live_transcript")
    add_import(root / "whisper_gl" / "streaming.py", "from .transcribe import Transcriber")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "No import cycles between the package's modules BROKEN" in result.stdout
    assert "Layers: data -> engine -> serving -> command line KEPT" in result.stdout


def test_an_engine_module_importing_the_command_line_breaks_the_contract(tmp_path):
    root = package_copy(tmp_path)
    add_import(root / "whisper_gl" / "export.py", "from .cli import door")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "Layers: data -> engine -> serving -> command line BROKEN" in result.stdout
    assert "whisper_gl.export -> whisper_gl.cli" in result.stdout
