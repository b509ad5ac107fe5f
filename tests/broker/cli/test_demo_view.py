"""``mediabroker demo``'s table, legend and summary, from made-up figures."""

from __future__ import annotations

import io
from typing import Any

import pytest

from mediabroker.cli.demo_view import (
    LEGEND,
    WIDTH,
    Report,
    Screen,
    live_block,
    summary_lines,
)

MIB = 1024 * 1024


def report(name: str, track: str, reads: str, frame_bytes: int, delivered: int) -> Report:
    return Report(name, 4242, track, reads, frame_bytes, delivered, 3, 1.5, 4.0, 10.0)


REPORTS = [
    report("recorder-1", "t1", "1280x720 bgr24 30fps", 1280 * 720 * 3, 300),
    report("worker-1", "t2", "320x320 rgbf32 letterbox 30fps", 320 * 320 * 12, 120),
    report("preview-1", "t3", "320x180 bgr24 5fps", 320 * 180 * 3, 50),
    report("worker-2", "t4", "320x320 rgbf32 letterbox 30fps", 320 * 320 * 12, 118),
]


def source(sid: str, fmt: str, rate: float, shm_mib: int, holders: list[str]) -> dict[str, Any]:
    return {
        "id": sid,
        "kind": "video",
        "format": fmt,
        "nominalRate": rate,
        "shmBytes": shm_mib * MIB,
        "holders": holders,
    }


STATS: dict[str, Any] = {
    "sources": [
        source(
            "1-video", "1280x720 bgr24", 30, 21, ["source:2-video", "source:3-video", "track:t1"]
        ),
        source("2-video", "320x320 rgbf32", 30, 9, ["track:t2", "track:t4"]),
        source("3-video", "320x180 bgr24", 5, 1, ["track:t3"]),
    ],
    "processes": [
        {"pid": 10, "role": "daemon", "cpuPercent": None, "rssBytes": 60 * MIB},
        {"pid": 11, "role": "capture 2-video", "cpuPercent": 3.5, "rssBytes": 80 * MIB},
    ],
}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_block_names_each_consumer_ring_and_process_within_80_columns() -> None:
    lines = live_block("title", REPORTS, STATS)
    text = "\n".join(lines)
    assert all(len(line) <= WIDTH for line in [*lines, *LEGEND]), lines
    assert len(lines) < 24 - 1  # with the line above it, on an 80x24 terminal
    assert "worker-1, worker-2" in text  # the readers of the one derived tensor ring
    assert "recorder-1, 2 derived sources" in text  # the camera's ring feeds both derived
    assert "3 ring(s) for 4 consumers" in text and "31.0 MiB" in text
    assert "capture 320x320 rgbf32" in text  # a capture process named by what it makes
    assert "DISCARDED" in text and "LATENCY" in text


def test_the_summary_sets_the_rings_beside_a_copy_per_consumer() -> None:
    text = " ".join(summary_lines(REPORTS, STATS, 10))
    assert "4 consumer processes read 3 ring(s), 31.0 MiB" in text
    assert "worker-1 and worker-2 read the same 320x320 rgbf32 ring, made once" in text
    assert "A ring per consumer would take 4 rings, 40.0 MiB" in text
    copied = sum(r.delivered * r.frame_bytes for r in REPORTS) / 1e9
    assert f"{copied:.2f} GB" in text and "0 bytes copied" in text


def test_a_terminal_gets_the_block_redrawn_in_place() -> None:
    out = Terminal()
    screen = Screen(out)
    screen.draw(["a", "b", "c"])
    first = out.getvalue()
    screen.draw(["a", "b"])
    second = out.getvalue()[len(first) :]
    assert "\033[" not in first.replace("\033[K", "").replace("\033[J", "")  # nothing to go up over
    assert second.startswith("\r\033[3A")  # back over the three lines drawn
    assert second.endswith("\033[J")  # the third line of before is cleared


def test_no_terminal_gets_no_escape_sequences() -> None:
    out = io.StringIO()
    screen = Screen(out)
    screen.draw(["a", "b"])
    screen.print(["plain"])
    assert out.getvalue() == "plain\n"


def test_a_block_taller_than_the_terminal_is_cut_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cursor cannot go up past the top of the screen: a block that does
    not fit would scroll and leave its top behind at every redraw."""
    monkeypatch.setenv("LINES", "5")
    monkeypatch.setenv("COLUMNS", "30")
    out = Terminal()
    screen = Screen(out)
    screen.draw([str(i) * 40 for i in range(10)])
    screen.draw(["x"])
    drawn, again = out.getvalue().split("\r")
    assert drawn.count("\n") == 4 and "1" * 30 not in drawn  # 4 lines of 29 characters
    assert again.startswith("\033[4A")
