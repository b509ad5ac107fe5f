"""The recorder's output: one progress line redrawn in place on a terminal,
and the lines that stay (what was written, what was removed).

Off a terminal (a pipe, a file, the journal) there is no progress line at
all, only the lines that stay, each flushed as it is written so a service's
journal shows a segment as soon as it is closed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressLine", "human_size"]

REDRAW_EVERY_S = 0.1
CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line


class ProgressLine:
    """Writes to ``stream``: `update` redraws the progress line (terminals
    only, at most every 0.1 s), `say` writes a line that stays."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.tty = stream.isatty()
        self._drawn = False
        self._last = 0.0

    def __repr__(self) -> str:
        return f"<ProgressLine tty={self.tty} drawn={self._drawn}>"

    def update(self, text: Callable[[], str]) -> None:
        """Redraw the progress line as ``text()`` (cut to the terminal's
        width), unless it was drawn less than 0.1 s ago or this is not a
        terminal; ``text`` is called only when the line is drawn."""
        now = time.monotonic()
        if not self.tty or (self._drawn and now - self._last < REDRAW_EVERY_S):
            return
        self._last = now
        width = shutil.get_terminal_size().columns - 1  # the last column would wrap
        self._stream.write(CLEAR_LINE + text()[:width])
        self._stream.flush()
        self._drawn = True

    def say(self, line: str) -> None:
        """Write ``line`` on a line of its own (in place of the progress line,
        which the next `update` draws again below it)."""
        self.clear()
        self._stream.write(line + "\n")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the progress line, if one is drawn."""
        if self._drawn:
            self._stream.write(CLEAR_LINE)
            self._stream.flush()
            self._drawn = False


def human_size(size: int) -> str:
    """A byte count for people: "812 KiB", "3.4 MiB"."""
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
