"""`ruff check` ([tool.ruff] in pyproject.toml: pycodestyle, pyflakes, import order, bugbear, pyupgrade) finds
nothing in the repository's Python (src, tests, studies)."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_finds_nothing():
    result = subprocess.run([RUFF, "check", "--no-cache", "--output-format", "concise", "src", "tests", "studies"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
