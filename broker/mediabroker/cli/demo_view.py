"""What ``mediabroker demo`` prints: one live table, a legend and a summary.

Design note. The figures come from two places: each consumer process sends
its own `Report` (what it reads, frames delivered and discarded, latency),
and the daemon's ``stats`` reply, as `mediabroker.cli.inspect.stats_report`
makes it, gives the rings (their format, size in /dev/shm and holders) and
the processes (CPU %, RSS). The functions here only turn those into lines;
`Screen` prints them: redrawn in place with ANSI cursor movement on a
terminal (no curses: two escape sequences are all it takes), as plain lines
otherwise, for CI logs and pipes.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from mediabroker.config_values import MIB

__all__ = [
    "LEGEND",
    "Report",
    "Screen",
    "consumer_header",
    "consumer_row",
    "live_block",
    "summary_lines",
]

LEGEND = [
    "READS      what the consumer asked for: size, pixel format, frames a second",
    "DELIVERED  frames it read; DISCARDED: frames that came while it was busy",
    "           (a reader gets the newest frame, never a queue; track.stats)",
    "LATENCY    camera capture to the consumer's read, ms: median/max lately (a",
    "           reader that comes back after a frame's interval finds it older)",
    "RING       shared memory in /dev/shm, written once a frame for every reader",
]


@dataclass(frozen=True, slots=True)
class Report:
    """What one consumer process saw so far (counts) and lately (rate, latency)."""

    name: str
    pid: int
    track_id: str
    reads: str  # e.g. "320x320 rgbf32 letterbox 30fps"
    frame_bytes: int  # one frame's pixels, as the consumer sees them
    delivered: int  # frames read so far (track.stats)
    discarded: int  # frames skipped so far
    latency_ms_p50: float  # capture to read
    latency_ms_max: float
    elapsed_s: float  # since the consumers started reading together
    done: bool = False  # its last report: the consumer stopped its track


# -- the consumers' table ----------------------------------------------------------

WIDTH = 79  # what a line may take: an 80-column terminal, without wrapping
_ROW = "{:<10} {:>7} {:<30} {:>9} {:>9} {:>9}"  # 79 characters


def consumer_header() -> str:
    return _ROW.format("CONSUMER", "PID", "READS", "DELIVERED", "DISCARDED", "LATENCY")


def consumer_row(report: Report) -> str:
    latency = f"{report.latency_ms_p50:.1f}/{report.latency_ms_max:.1f}"
    return _ROW.format(
        report.name, report.pid, report.reads, report.delivered, report.discarded, latency
    )


# -- rings and processes, from the daemon's stats -----------------------------------


def _video_sources(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [s for s in (stats or {}).get("sources", []) if s.get("kind") == "video"]


def _derived_ids(sources: Iterable[dict[str, Any]]) -> set[str]:
    """Sources that another source holds: the derived ones."""
    holders = (h for s in sources for h in s["holders"])
    return {h.removeprefix("source:") for h in holders if h.startswith("source:")}


def _readers(source: dict[str, Any], reports: Iterable[Report]) -> list[str]:
    return [r.name for r in reports if f"track:{r.track_id}" in source["holders"]]


def _rate(source: dict[str, Any]) -> str:
    rate = source.get("nominalRate")
    return f" {rate:g}fps" if rate else ""


def ring_lines(stats: dict[str, Any] | None, reports: Iterable[Report]) -> list[str]:
    """One line a ring: format, size in /dev/shm, who reads it; then the total."""
    reports = list(reports)
    sources = _video_sources(stats)
    derived = _derived_ids(sources)
    lines = [f"{'RING':<34} {'SHM':>9}  READ BY"]
    for source in sources:
        what = "derived" if source["id"] in derived else "camera"
        readers = _readers(source, reports)
        feeds = sum(1 for h in source["holders"] if h.startswith("source:"))
        if feeds:
            readers.append(f"{feeds} derived source{'s' if feeds > 1 else ''}")
        lines.append(
            f"{source['format'] + _rate(source) + f' ({what})':<34} "
            f"{_mib(source['shmBytes']):>9}  {', '.join(readers) or '-'}"
        )
    total = sum(s["shmBytes"] for s in sources)
    lines.append(
        f"{f'{len(sources)} ring(s) for {len(reports)} consumers':<34} {_mib(total):>9}  in total"
    )
    return lines


def process_lines(stats: dict[str, Any] | None) -> list[str]:
    """The daemon and each of its processes: CPU % (since the last stats) and RSS."""
    formats = {s["id"]: s["format"] for s in (stats or {}).get("sources", [])}
    lines = [f"{'PROCESS':<34} {'PID':>7} {'CPU %':>6} {'RSS':>10}"]
    for process in (stats or {}).get("processes", []):
        role = process["role"]
        source_id = role.removeprefix("capture ")
        if source_id != role and source_id in formats:
            role = f"capture {formats[source_id]}"
        cpu = process["cpuPercent"]
        lines.append(
            f"{role:<34} {process['pid']:>7} {'-' if cpu is None else f'{cpu:.1f}':>6} "
            f"{_mib(process['rssBytes']):>10}"
        )
    return lines


def live_block(title: str, reports: Iterable[Report], stats: dict[str, Any] | None) -> list[str]:
    """The whole table: consumers, rings, processes (20 lines for the demo's 4
    consumers: it fits an 80x24 terminal)."""
    reports = list(reports)
    return [
        title,
        "",
        consumer_header(),
        *([consumer_row(r) for r in reports] or ["(the consumer processes are starting)"]),
        "",
        *ring_lines(stats, reports),
        "",
        *process_lines(stats),
    ]


# -- the summary ----------------------------------------------------------------------


def summary_lines(
    reports: Iterable[Report], stats: dict[str, Any] | None, duration_s: float
) -> list[str]:
    """What the consumers cost in rings and shared memory, beside a copy for
    each; wrapped to `WIDTH`."""
    reports = list(reports)
    sources = _video_sources(stats)
    total = sum(s["shmBytes"] for s in sources)
    ring_of: dict[str, dict[str, Any]] = {}  # consumer name -> the source it reads
    shared = []
    derived = _derived_ids(sources)
    for source in sources:
        readers = _readers(source, reports)
        ring_of.update(dict.fromkeys(readers, source))
        if len(readers) > 1:
            made = ", made once for all of them" if source["id"] in derived else ""
            shared.append(
                f"{_and(readers)} read the same {source['format']} ring{made}: "
                f"{len(readers)} consumers, one ring."
            )
    copies = sum(r.delivered * r.frame_bytes for r in reports)
    per_consumer = sum(s["shmBytes"] for s in ring_of.values())
    paragraphs = [
        f"Summary: {len(reports)} consumer processes read {len(sources)} ring(s), "
        f"{_mib(total)} of /dev/shm. Each ring is written once a frame, however many "
        "read it; a derived ring (another size, rate or format) is made once, for every "
        "track that asks for the same.",
        *shared,
        f"A ring per consumer would take {len(ring_of)} rings, {_mib(per_consumer)}; a copy "
        f"of each frame to each consumer would have moved {copies / 1e9:.2f} GB in "
        f"{duration_s:g} s. Here every read is a view into the ring: 0 bytes copied.",
    ]
    return [line for text in paragraphs for line in textwrap.wrap(text, WIDTH)]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


# -- printing ----------------------------------------------------------------------


class Screen:
    """Lines on ``out``: a block redrawn in place on a terminal, appended otherwise.

    On a terminal `draw` moves the cursor back up over the block it drew
    last and overwrites it. The block is cut to the terminal's size, each line
    to its width so that none wraps and the count of lines stays right, and to
    its height, as the cursor cannot go up past the top of the screen. Not on
    a terminal, `draw` prints nothing: the caller prints plain lines with
    `print` instead.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = 0  # lines of the block on screen now

    def draw(self, lines: list[str]) -> None:
        """Replace the block on screen with ``lines`` (a terminal only)."""
        if not self.tty:
            return
        size = shutil.get_terminal_size()
        width, height = max(20, size.columns - 1), max(2, size.lines - 1)
        lines = lines[:height]
        up = f"\r\033[{self._drawn}A" if self._drawn else ""
        body = "".join(f"{line[:width]}\033[K\n" for line in lines)
        self.out.write(f"{up}{body}\033[J")  # \033[J clears what a longer block left below
        self.out.flush()
        self._drawn = len(lines)

    def print(self, lines: Iterable[str]) -> None:
        """Lines below the block (which then stays as it is)."""
        self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._drawn = 0
