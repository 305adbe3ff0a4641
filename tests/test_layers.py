"""The package's layers (.importlinter): no module imports from a layer above its own, not even inside a
function; `lint-imports` checks it, and fails when a module breaks it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(config: Path, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--no-logo", config.name], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_kept():
    result = lint_imports(REPO / ".importlinter", REPO, REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_import_from_a_higher_layer_breaks_it(tmp_path):
    """A copy of the package whose lowest layer imports the command line inside a function: reported."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "continual_diffusion", src / "continual_diffusion",
                    ignore=shutil.ignore_patterns("__pycache__"))
    io_module = src / "continual_diffusion" / "utils" / "io.py"
    io_module.write_text(io_module.read_text() + "\n\ndef _x():\n    from continual_diffusion.cli import main\n")
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    result = lint_imports(tmp_path / ".importlinter", tmp_path, src)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout and "BROKEN" in result.stdout
    assert "continual_diffusion.utils.io -> continual_diffusion.cli" in result.stdout
