"""Progress bars never leave an unfinished line behind for the next message (issue 17: errors stand on
their own line in logs)."""

import io
import re

import pytest

from continual_diffusion.utils.progress import progress_bar
from tests.helpers import REPO


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_an_open_bar_off_a_terminal_leaves_no_unfinished_line():
    stream = io.StringIO()
    bar = progress_bar(total=5, desc="train clora task 1", unit="step", file=stream)  # never closed (error path)
    bar.update(2)
    bar.refresh()
    stream.write("cdiff: error: something failed\n")
    lines = stream.getvalue().split("\n")
    assert "cdiff: error: something failed" in lines
    assert "\r" not in stream.getvalue()
    assert all(line.startswith("train clora task 1:") for line in lines[:-2])
    bar.close()


def test_a_closed_bar_off_a_terminal_ends_with_its_final_count():
    stream = io.StringIO()
    with progress_bar(total=3, desc="prepare-data faces", unit="img", file=stream) as bar:
        bar.update(3)
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and re.match(r"prepare-data faces: 100%\|.*\| 3/3 ", lines[-2]), lines


def test_a_bar_used_as_context_manager_ends_its_line_on_a_terminal_when_an_error_escapes():
    stream = Terminal()
    with pytest.raises(RuntimeError):
        with progress_bar(total=3, desc="prepare-data faces", unit="img", file=stream) as bar:
            bar.update(1)
            raise RuntimeError("boom")
    assert stream.getvalue().endswith("\n")


def test_every_bar_is_made_by_progress_bar():
    package = REPO / "src" / "continual_diffusion"
    direct = [str(p.relative_to(package)) for p in package.rglob("*.py")
              if p.name != "progress.py" and re.search(r"\btqdm\(|from tqdm|import tqdm", p.read_text())]
    assert direct == []
