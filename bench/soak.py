"""``python -m bench --soak SECONDS``: does memory or the fd count grow over time?

A daemon on fake devices, N readers on its 1080p30 camera for the whole
window; RSS and open fds of the daemon (each of its processes) and of each
reader at the window's start and end, and the shared memory the source uses
(slots x frame bytes, whatever the reader count).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from mediastream.ring import SHM_DIR

from .cells import BenchEnv, bench_env, run_cell
from .report import machine_info
from .specs import PACED_FPS, Cell, CellResult

__all__ = ["run_soak"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemoryRow:
    process: str
    pid: int
    rss_start: int
    rss_end: int
    fds_start: int
    fds_end: int


class _DaemonWatch:
    """Samples the daemon's processes and segments at the window's edges."""

    def __init__(self, env: BenchEnv) -> None:
        assert env.daemon is not None
        self._env = env
        self.memory: dict[str, dict[int, tuple[str, int, int]]] = {}
        self.segments: dict[str, int] = {}

    def __call__(self, edge: str, pids: dict[str, int]) -> None:
        assert self._env.daemon is not None
        self.memory[edge] = self._env.daemon.tree.memory()
        if edge == "start":
            found = SHM_DIR.glob(self._env.prefix + "*")
            self.segments = {path.name: path.stat().st_size for path in found}

    def rows(self) -> list[MemoryRow]:
        start, end = self.memory.get("start", {}), self.memory.get("end", {})
        rows = []
        for pid, (role, rss, fds) in start.items():
            _, rss_end, fds_end = end.get(pid, (role, 0, 0))
            rows.append(MemoryRow(f"daemon {role}", pid, rss, rss_end, fds, fds_end))
        return rows


def _reader_rows(result: CellResult) -> list[MemoryRow]:
    return [
        MemoryRow(
            f"reader {i}", m["pid"], m["rss_start"], m["rss_end"], m["fds_start"], m["fds_end"]
        )
        for i, m in enumerate(result.reader_memory)
    ]


def _markdown(result: CellResult, rows: list[MemoryRow], segments: dict[str, int]) -> str:
    cell = result.cell
    lines = [
        f"# mediabroker soak: {cell.duration_s:g} s, {cell.readers} readers, "
        f"{cell.size} at {cell.fps:g} fps",
        "",
        f"Latency p50 {result.p50_us:,.0f} µs, p99 {result.p99_us:,.0f} µs; reader CPU "
        f"{result.reader_us:,.0f} µs/frame; daemon CPU {result.producer_us:,.0f} µs/frame; "
        f"{result.fps_per_reader:.1f} fps per reader, {result.dropped_pct:.2f}% dropped. "
        f"Errors: {'; '.join(result.errors) or 'none'}.",
        "",
        "| process | pid | RSS start MiB | RSS end MiB | growth MiB | fds start | fds end |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        growth = (row.rss_end - row.rss_start) / MIB
        lines.append(
            f"| {row.process} | {row.pid} | {row.rss_start / MIB:.1f} | {row.rss_end / MIB:.1f} "
            f"| {growth:+.2f} | {row.fds_start} | {row.fds_end} |"
        )
    frame_mib = cell.width * cell.height * 3 / MIB
    lines += ["", "RSS counts the ring's pages in every process that maps it; they exist once."]
    lines += ["", "Shared memory (the same whatever the reader count):"]
    lines += [
        f"- `{name}`: {size / MIB:.1f} MiB ({size / MIB / frame_mib:.2f} x a "
        f"{frame_mib:.1f} MiB frame)"
        for name, size in segments.items()
    ]
    return "\n".join(lines) + "\n"


def run_soak(seconds: float, readers: int, out: Path, command: str) -> int:
    cell = Cell("daemon", 1920, 1080, readers, PACED_FPS, seconds)
    with bench_env(with_daemon=True) as env:
        watch = _DaemonWatch(env)
        result = run_cell(env, cell, watch)
    rows = watch.rows() + _reader_rows(result)
    markdown = _markdown(result, rows, watch.segments)
    (out / "soak.md").write_text(markdown)
    document = {
        "machine": machine_info(),
        "command": command,
        "cell": asdict(cell),
        "p50_us": result.p50_us,
        "p99_us": result.p99_us,
        "errors": result.errors,
        "processes": [asdict(row) for row in rows],
        "segments": watch.segments,
    }
    (out / "soak.json").write_text(json.dumps(document, indent=1) + "\n")
    print(markdown)
    print(f"written: {out / 'soak.md'}, {out / 'soak.json'}", file=sys.stderr)
    return 1 if result.errors else 0
