"""Progress bars for long work: tqdm with a description, throttled so log files stay readable."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(**kwargs) -> tqdm:
    """A tqdm bar on stderr; refreshes at most every second (every 30 s when not a terminal)."""
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 1.0 if interactive else 30.0)
    kwargs.setdefault("leave", interactive)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(**kwargs)
