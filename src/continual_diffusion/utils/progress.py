"""Progress bars for long work: tqdm with a description, throttled so log files stay readable.

Use a bar as a context manager (``with progress_bar(...) as bar:``) so that it is closed on the error
path too. Off a terminal (a Snakemake job's log, a pipe) every refresh is written as a finished line,
so whatever is printed next, a ``cdiff: error: ...`` line included, starts at column 0 even when a bar
is left open.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class LineStream:
    """A non-terminal stream for tqdm: each refresh ``\\r<status><padding>`` becomes ``<status>\\n``.

    tqdm's clearing writes (carriage returns and spaces) and its closing newline add nothing.
    """

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        status = text.replace("\r", "").rstrip()
        if status:
            self.stream.write(status + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def progress_bar(**kwargs) -> tqdm:
    """A tqdm bar on stderr; refreshes at most every second (every 30 s, one line each, when not a terminal)."""
    stream = kwargs.pop("file", sys.stderr)
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    kwargs.setdefault("mininterval", 1.0 if interactive else 30.0)
    kwargs.setdefault("leave", True)  # off a terminal: the final count is the bar's last line
    return tqdm(file=stream if interactive else LineStream(stream), **kwargs)
