"""``mediabroker demo``: the demo from the README's quick start.

It is run as a user runs it (``python -m mediabroker demo``), once with its
output on a pipe (as in CI) and once on a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

from mediastream.ring import SHM_DIR
from support import child_env, run_mediabroker

DEMO = ("demo", "--duration", "3", "--width", "320", "--height", "240")
NAMES = ("recorder-1", "worker-1", "preview-1", "worker-2")
CURSOR_UP = re.compile(r"\r\x1b\[(\d+)A")


def rows(text: str) -> dict[str, list[str]]:
    """The rows of the last consumers' table in ``text`` (from its header to
    the blank line after it), by consumer name."""
    table = text[text.rindex("CONSUMER") :].split("\n\n")[0]
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


def test_demo_without_a_terminal_prints_plain_rows_and_a_summary() -> None:
    """1. Four consumer processes (recorder, worker, preview, worker) run 3 s.
    2. Their rows come once a second, then the table, legend and summary: no
       escape sequence anywhere.
    3. Each read frames; the workers read one ring (a 240x240 tensor), so
       four consumers cost three rings. Exit 0, nothing left in /dev/shm."""
    result = run_mediabroker(*DEMO)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "\x1b[" not in out
    timed = [line.split() for line in out.splitlines() if re.match(r"\s*\d+\.\ds\s", line)]
    assert {row[1] for row in timed} == set(NAMES), out
    final = rows(out)
    assert set(final) == set(NAMES), out
    assert all(int(row[-3]) > 0 for row in final.values()), out  # DELIVERED
    assert final["worker-1"][2:5] == ["240x240", "rgbf32", "letterbox"], out
    assert final["preview-1"][2:5] == ["80x60", "bgr24", "5fps"], out
    summary = " ".join(out[out.index("Summary:") :].split())
    assert "4 consumer processes read 3 ring(s)" in summary, out
    assert "worker-1 and worker-2 read the same 240x240 rgbf32 ring" in summary, out
    assert "A ring per consumer would take 4 rings" in summary, out
    assert "capture 240x240 rgbf32" in out and "daemon" in out  # the processes' CPU, RSS
    assert "segments left in /dev/shm: 0" in out
    assert not list(SHM_DIR.glob("mbdemo*"))


def run_on_a_terminal(*args: str, timeout: float = 60) -> tuple[int, str]:
    """``python -m mediabroker ARGS`` with stdout and stderr on an 80x24 pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in child_env().items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mediabroker", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(master, 65536) if ready else b""
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        process.kill()
        process.wait()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_demo_on_a_terminal_redraws_one_table_in_place() -> None:
    """1. The demo runs with its output on a pseudo-terminal.
    2. It redraws its table in place: the cursor goes back up over it, once
       per redraw (twice a second), by the table's own height.
    3. It ends with the summary below the table, exits 0 and leaves nothing
       in /dev/shm."""
    code, out = run_on_a_terminal(*DEMO)
    assert code == 0, out
    ups = [int(n) for n in CURSOR_UP.findall(out)]
    assert len(ups) >= 4, out  # ~2 a second for 3 s
    assert max(ups) > len(NAMES) + 10, out  # the whole block: consumers, rings, processes
    assert out.count("CONSUMER") == len(ups) + 1  # every table drawn over the one before
    tail = out[out.rindex("\x1b[J") :]  # after the last redraw
    assert "Summary: 4 consumer processes read 3 ring(s)" in " ".join(tail.split()), out
    assert "segments left in /dev/shm: 0" in tail
    assert set(rows(out[: out.rindex("\x1b[J")].replace("\x1b[K", ""))) == set(NAMES), out
    assert not list(SHM_DIR.glob("mbdemo*"))
