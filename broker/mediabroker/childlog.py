"""What capture processes write to stderr, logged here once, with a level.

Design note. FFmpeg and OpenCV write their complaints straight to fd 2, with
no level the daemon's log knows and no limit: a damaged file that loops
prints the same four lines on every pass, forever. So a capture process's
fd 2 is a socket whose other end `ChildOutput` reads on the daemon's loop
(the child's own Python log lines come the same way), into its source's
`ChildLog`. Every line is logged through `logging`: a child's Python records
at their own level, OpenCV's at the level it states, FFmpeg's (which states
none) as warnings. A line seen again within `WINDOW_S` (the same text once
memory addresses are masked), by any process of the source, is counted
instead (`RepeatFilter`), and one line after the window says how often:
"... (repeated 57 times in the last 60 s)". Every line is redacted
(`mediabroker.urls`) before it is logged: FFmpeg quotes URLs, passwords
included.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mediabroker.urls import redact_text, url_secrets

__all__ = [
    "MAX_LINE_CHARS",
    "WINDOW_S",
    "ChildLog",
    "ChildOutput",
    "RepeatFilter",
    "classify",
    "native_detail",
]

log = logging.getLogger("mediabroker.capture")

WINDOW_S = 60.0  # repeats are summed up once per window
MAX_KINDS = 64  # distinct lines a window tracks; the rest are logged as they come
MAX_LINE_CHARS = 400  # a longer line is cut (a runaway library must not flood the log)
READ_BYTES = 65536
_PYTHON = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (capture\[[^\]]*\] .*)$")
_OPENCV = re.compile(r"^\[ *(DEBUG|INFO|WARN|ERROR|FATAL):[^\]]*\] *(.*)$")
_FFMPEG = re.compile(r"^\[([\w,.-]+) @ 0x[0-9a-f]+\] *(.*)$")
_OPENCV_LEVELS = {"WARN": "WARNING", "FATAL": "CRITICAL"}
_LEVELS = logging.getLevelNamesMapping()
_ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


def classify(line: str) -> tuple[int, str]:
    """The level and the text to log for one line a capture process wrote."""
    if match := _PYTHON.match(line):
        return _LEVELS[match[1]], match[2]
    if match := _OPENCV.match(line):
        return _LEVELS[_OPENCV_LEVELS.get(match[1], match[1])], f"OpenCV: {match[2]}"
    if match := _FFMPEG.match(line):
        return logging.WARNING, f"FFmpeg ({match[1]}): {match[2]}"
    return logging.WARNING, line


class RepeatFilter:
    """Which lines to log now and which to count (pure: the caller keeps time).

    `seen` answers True for a line not seen in the current window; a repeat
    is counted. `flush` ends the window: it returns the counted repeats, and
    lines that repeated stay known, so a line that goes on repeating makes
    one summary per window and nothing else.
    """

    def __init__(self) -> None:
        self._repeats: dict[str, int] = {}

    def seen(self, key: str) -> bool:
        if key in self._repeats:
            self._repeats[key] += 1
            return False
        if len(self._repeats) < MAX_KINDS:
            self._repeats[key] = 0
        return True

    def tracks(self, key: str) -> bool:
        """Whether ``key`` is known in this window (a repeat would be counted)."""
        return key in self._repeats

    def flush(self) -> list[tuple[str, int]]:
        """(line, repeats) for each line that repeated since the last flush."""
        repeated = [(key, count) for key, count in self._repeats.items() if count]
        self._repeats = dict.fromkeys((key for key, _ in repeated), 0)
        return repeated


class ChildLog:
    """Logs the lines one source's capture processes write, once per window.

    All the processes of one source share it, so a camera that is down, and
    whose capture process fails the same way on every reconnect, says so
    once, not once a process. Summaries come when a line arrives after the
    window ended, and at `flush` (the source closes). Call it on the loop.
    """

    def __init__(self, source_id: str, secrets: Sequence[str] = ()) -> None:
        self.source_id = source_id
        self._secrets = tuple(secrets)
        self._filter = RepeatFilter()
        self._levels: dict[str, int] = {}
        self._window_start = time.monotonic()

    @classmethod
    def for_backend(cls, source_id: str, params: Mapping[str, Any]) -> ChildLog:
        """The log for a source whose backend has ``params`` (a ``url`` holds secrets)."""
        url = params.get("url")
        return cls(source_id, url_secrets(url) if isinstance(url, str) else ())

    def line(self, line: str) -> None:
        """Log one line a capture process wrote, unless it is a repeat."""
        if not line:
            return
        if time.monotonic() - self._window_start >= WINDOW_S:
            self.flush()
        level, text = classify(redact_text(line[:MAX_LINE_CHARS], self._secrets))
        if not text.startswith("capture["):
            text = f"capture[{self.source_id}] {text}"
        key = _ADDRESS.sub("0x…", text)
        self._levels[key] = level
        if self._filter.seen(key):
            log.log(level, "%s", text)

    def flush(self) -> None:
        """Log how often each line repeated since the window began; a new
        window begins. Idempotent."""
        now = time.monotonic()
        elapsed = now - self._window_start
        for key, count in self._filter.flush():
            level = self._levels.get(key, logging.WARNING)
            log.log(level, "%s (repeated %d times in the last %.0f s)", key, count, elapsed)
        self._levels = {k: v for k, v in self._levels.items() if self._filter.tracks(k)}
        self._window_start = now

    def __repr__(self) -> str:
        return f"<ChildLog {self.source_id}>"


class ChildOutput:
    """Reads what one capture process writes to fd 2 (the socket `theirs`,
    handed to the child) into ``child_log``. `start` on the running loop;
    `close` once the child exited (reads what is left). Both idempotent."""

    def __init__(self, child_log: ChildLog) -> None:
        self.child_log = child_log
        self._ours, self.theirs = socket.socketpair()
        self._ours.setblocking(False)
        self._pending = b""
        self._reading = False

    def start(self) -> None:
        """Read on the running loop; the child has its copy of `theirs` now."""
        self.theirs.close()
        asyncio.get_running_loop().add_reader(self._ours.fileno(), self._read)
        self._reading = True

    def _read(self) -> None:
        try:
            data = self._ours.recv(READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        if len(self._pending) > READ_BYTES:  # no newline for this long: log it anyway
            lines.append(self._pending)
            self._pending = b""
        for raw in lines:
            self.child_log.line(raw.decode(errors="replace").rstrip())

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            asyncio.get_running_loop().remove_reader(self._ours.fileno())

    def close(self) -> None:
        """Log what the child left in the socket, then close. Idempotent;
        call it on the loop."""
        if self._ours.fileno() < 0:
            return
        self._stop_reading()
        self._drain()
        self.child_log.line(self._pending.decode(errors="replace").rstrip())
        self._pending = b""
        self._ours.close()
        self.theirs.close()

    def _drain(self) -> None:
        while True:
            try:
                data = self._ours.recv(READ_BYTES)
            except OSError:  # BlockingIOError: all read; the child is gone anyway
                return
            if not data:
                return
            self._take(data)

    def __repr__(self) -> str:
        state = "reading" if self._reading else "closed" if self._ours.fileno() < 0 else "idle"
        return f"<ChildOutput {self.child_log.source_id} {state}>"


def native_detail(stderr: str, secrets: Sequence[str] = (), limit: int = 3) -> str:
    """The first ``limit`` distinct things FFmpeg said in a probe child's
    ``stderr``, as one phrase for an error message ("" for none). OpenCV's
    lines are left out: they say only that FFmpeg failed."""
    said: list[str] = []
    for line in stderr.splitlines():
        level, text = classify(redact_text(line.strip()[:MAX_LINE_CHARS], secrets))
        if text and level >= logging.WARNING and text not in said:
            said.append(text)
    return "; ".join([text for text in said if text.startswith("FFmpeg")][:limit])
