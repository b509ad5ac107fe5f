"""``mediabroker devices`` and ``mediabroker stats``: what a running daemon
offers, and what it is doing.

Both are ordinary clients of the daemon, through the public `mediastream`
API plus `MediaDevices.broker_stats()`, so they work for any user the daemon
lets in. The daemon reports totals (frames, drops, CPU seconds) and each
source's measured frame rate; `stats_report` turns two of its replies into
the other rates (drops and CPU % per interval).
"""

from __future__ import annotations

import argparse
import json
import pwd
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mediabroker.cli.options import (
    EXIT_OK,
    add_client_options,
    add_command,
    positive_int,
    positive_seconds,
)
from mediabroker.config_values import MIB
from mediastream import InputDeviceInfo, MediaDeviceInfo, MediaDevices

__all__ = [
    "StatsSample",
    "add_parsers",
    "capability_summary",
    "render_stats",
    "run_devices",
    "run_stats",
    "stats_report",
    "take_sample",
    "user_name",
]


def add_parsers(commands: Any) -> None:
    """The ``devices`` and ``stats`` sub-commands."""
    devices = add_command(
        commands,
        "devices",
        "list the devices the daemon offers",
        "A table of the daemon's devices: kind, label, id and what each can do.",
    )
    add_client_options(devices)
    devices.add_argument("--json", action="store_true", help="print JSON, with every capability")
    devices.set_defaults(func=_devices, client=True)
    _add_stats(commands)


def _add_stats(commands: Any) -> None:
    stats = add_command(
        commands,
        "stats",
        "live view of sources, consumers and the daemon's processes",
        "Sources (format, frame rate, frames, drops, shared memory, holders), consumers\n"
        "(pid, name, user, tracks, frames delivered and discarded as their heartbeats\n"
        "say) and the daemon's processes (CPU %, RSS), refreshed every --interval\n"
        "seconds until Ctrl-C. Frame rates are the daemon's, over its last seconds;\n"
        "drops and CPU % are over each interval.",
    )
    add_client_options(stats)
    stats.add_argument(
        "--json",
        action="store_true",
        help="print one report as JSON (rates over one interval) and exit",
    )
    stats.add_argument(
        "--interval",
        type=positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="refresh interval (default 1)",
    )
    stats.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="stop after N refreshes (default: until Ctrl-C)",
    )
    stats.set_defaults(func=_stats, client=True)


def _devices(args: argparse.Namespace) -> int:
    return run_devices(args.run_dir, args.json, sys.stdout)


def _stats(args: argparse.Namespace) -> int:
    return run_stats(args.run_dir, args.json, args.interval, args.count, sys.stdout)


# -- devices -------------------------------------------------------------------


def run_devices(run_dir: Path | None, as_json: bool, out: TextIO) -> int:
    """A table of the daemon's devices on ``out``, or JSON with every capability."""
    with MediaDevices(run_dir, name="mediabroker devices") as devices:
        infos = devices.enumerateDevices()
    if as_json:
        rows = [{**i.toJSON(), "capabilities": _capabilities(i)} for i in infos]
        json.dump(rows, out, indent=2)
        out.write("\n")
        return EXIT_OK
    table = [[i.kind, i.label, i.deviceId, capability_summary(i)] for i in infos]
    out.write(_table(["KIND", "LABEL", "ID", "CAPABILITIES"], table))
    if not infos:
        out.write("(the daemon offers no devices)\n")
    return EXIT_OK


def capability_summary(info: MediaDeviceInfo) -> str:
    """One line: sizes, rates and formats of a camera; rates and channels of a microphone."""
    if not isinstance(info, InputDeviceInfo):
        return ""
    caps = info.getCapabilities()
    parts = []
    if "width" in caps and "height" in caps:
        low = f"{caps['width']['min']}x{caps['height']['min']}"
        high = f"{caps['width']['max']}x{caps['height']['max']}"
        parts.append(high if low == high else f"{low}..{high}")
    if "frameRate" in caps:
        parts.append(f"{_span(caps['frameRate'])} fps")
    if "pixelFormat" in caps:
        parts.append("/".join(caps["pixelFormat"]))
    if "sampleRate" in caps:
        parts.append(f"{_span(caps['sampleRate'])} Hz")
    if "channelCount" in caps:
        parts.append(f"{_span(caps['channelCount'])} ch")
    return ", ".join(parts)


def _span(value: Any) -> str:
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        return f"{low:g}" if low == high else f"{low:g}..{high:g}"
    return str(value)


def _capabilities(info: MediaDeviceInfo) -> dict[str, Any]:
    return info.getCapabilities() if isinstance(info, InputDeviceInfo) else {}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines) + "\n"


# -- stats: from two daemon replies to one report --------------------------------


@dataclass(frozen=True, slots=True)
class StatsSample:
    """One reply of the daemon to ``stats`` and when it came."""

    at: float  # time.monotonic() when taken
    stats: dict[str, Any]


def take_sample(devices: MediaDevices) -> StatsSample:
    """Ask the daemon now (blocking, one round trip)."""
    return StatsSample(time.monotonic(), devices.broker_stats())


def stats_report(first: StatsSample | None, second: StatsSample) -> dict[str, Any]:
    """Sources, consumers and processes from ``second``; fps as the daemon
    measured it, drops and CPU % over the time since ``first`` (None: those
    are null). This is what ``stats --json`` prints."""
    stats = second.stats
    before = first.stats if first is not None else {}
    elapsed = second.at - first.at if first is not None else 0.0
    old_sources = {s["id"]: s for s in before.get("sources", [])}
    old_processes = {p["pid"]: p for p in before.get("processes", [])}
    return {
        "daemon": {
            "pid": stats.get("pid"),
            "counters": stats.get("counters", {}),
            "interval_s": round(elapsed, 3) if first is not None else None,
        },
        "sources": [_source_row(s, old_sources.get(s["id"])) for s in stats.get("sources", [])],
        "consumers": [_consumer_row(s) for s in stats.get("sessions", [])],
        "processes": [
            _process_row(p, old_processes.get(p["pid"]), elapsed)
            for p in stats.get("processes", [])
        ],
    }


def _source_row(now: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    kind = now.get("kind", "")
    rate, drops = _source_rates(now, old)
    holders = list(now.get("holders", []))  # e.g. "track:3f2c...", "source:2-video-..."
    return {
        "id": now["id"],
        "device": now.get("label", ""),
        "state": now.get("state", ""),
        "kind": kind,
        "format": _source_format(now),
        "nominalRate": now.get("frameRate") if kind == "video" else now.get("sampleRate"),
        "rate": None if rate is None else round(rate, 2),  # frames or sample frames a second
        "frames": now.get("frames", 0),
        "drops": drops,
        "shmBytes": now.get("shmBytes", 0),
        "consumers": len(holders),
        "holders": holders,
        "pid": now.get("pid"),
    }


def _source_format(source: dict[str, Any]) -> str:
    kind = source.get("kind", "")
    if kind == "video":
        return f"{source['width']}x{source['height']} {source['pixelFormat']}"
    if kind == "audio":
        return f"{source['sampleRate']} Hz x{source['channels']}"
    return ""


def _source_rates(
    now: dict[str, Any], old: dict[str, Any] | None
) -> tuple[float | None, int | None]:
    """Frames a second as the daemon measured them over its last seconds,
    and the frames it counted dropped since ``old``; from a daemon that
    does not measure, both over the interval."""
    rate, drops = _interval_rates(now, old)
    if now.get("measuredRate") is not None:
        rate = now["measuredRate"]
    if old is not None and "droppedFrames" in now and "droppedFrames" in old:
        drops = max(0, now["droppedFrames"] - old["droppedFrames"])
    return rate, drops


def _interval_rates(
    now: dict[str, Any], old: dict[str, Any] | None
) -> tuple[float | None, int | None]:
    """Frames a second and video frames dropped, measured on the newest
    frames' own timestamps (not on when we asked); None without a base."""
    if old is None or not now.get("newestNs") or not old.get("newestNs"):
        return None, None
    span_s = (now["newestNs"] - old["newestNs"]) / 1e9
    frames = now["frames"] - old["frames"]
    if span_s > 0 and frames >= 0:
        drops = None
        if now.get("kind") == "video" and now.get("frameRate"):
            drops = max(0, round(span_s * now["frameRate"]) - frames)
        return frames / span_s, drops
    return (0.0 if frames == 0 else None), None


def _consumer_row(session: dict[str, Any]) -> dict[str, Any]:
    uid = session.get("uid")
    return {
        "pid": session.get("pid"),
        "name": session.get("name", ""),
        "uid": uid,
        "user": user_name(uid) if isinstance(uid, int) else "",
        "tracks": len(session.get("tracks", [])),
        # Counted in each client, sent with its heartbeats; null before its first.
        "delivered": session.get("delivered"),
        "discarded": session.get("discarded"),
    }


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _process_row(now: dict[str, Any], old: dict[str, Any] | None, elapsed: float) -> dict[str, Any]:
    cpu = None
    if old is not None and elapsed > 0:
        cpu = round(max(0.0, (now["cpuSeconds"] - old["cpuSeconds"]) / elapsed * 100), 1)
    return {"pid": now["pid"], "role": now["role"], "cpuPercent": cpu, "rssBytes": now["rssBytes"]}


# -- stats: the live view ----------------------------------------------------------


def render_stats(report: dict[str, Any], run_dir: Path) -> str:
    """A `stats_report` as the text of one screen of the live view."""
    daemon = report["daemon"]
    counters = ", ".join(f"{k} {v}" for k, v in daemon["counters"].items())
    return "".join(
        [
            f"mediabroker pid {daemon['pid']} on {run_dir} ({counters})\n",
            "\nSOURCES\n",
            _sources_table(report["sources"]),
            "\nCONSUMERS\n",
            _consumers_table(report["consumers"]),
            "\nPROCESSES\n",
            _processes_table(report["processes"]),
        ]
    )


def _sources_table(sources: list[dict[str, Any]]) -> str:
    if not sources:
        return "(none)\n"
    headers = ["ID", "DEVICE", "STATE", "FORMAT", "RATE", "FRAMES", "DROPS", "SHM", "HOLDERS"]
    rows = [
        [
            s["id"],
            s["device"],
            s["state"],
            s["format"],
            _rate(s["rate"], s["kind"]),
            str(s["frames"]),
            _opt(s["drops"]),
            _mib(s["shmBytes"]),
            str(len(s["holders"])),
        ]
        for s in sources
    ]
    return _table(headers, rows)


def _consumers_table(consumers: list[dict[str, Any]]) -> str:
    if not consumers:
        return "(none)\n"
    headers = ["PID", "NAME", "USER", "TRACKS", "DELIVERED", "DISCARDED"]
    rows = [
        [
            str(c["pid"]),
            c["name"],
            c["user"],
            str(c["tracks"]),
            _opt(c["delivered"]),
            _opt(c["discarded"]),
        ]
        for c in consumers
    ]
    return _table(headers, rows)


def _processes_table(processes: list[dict[str, Any]]) -> str:
    rows = [
        [str(p["pid"]), p["role"], _opt(p["cpuPercent"], "{:.1f}"), _mib(p["rssBytes"])]
        for p in processes
    ]
    return _table(["PID", "ROLE", "CPU%", "RSS"], rows)


def _rate(rate: float | None, kind: str) -> str:
    if rate is None:
        return "-"
    return f"{rate:.1f} fps" if kind == "video" else f"{rate:.0f} Hz"


def _opt(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def run_stats(
    run_dir: Path | None, as_json: bool, interval_s: float, count: int | None, out: TextIO
) -> int:
    """``--json``: one report over one interval. Otherwise a live view that
    refreshes every ``interval_s`` until Ctrl-C (or ``count`` refreshes)."""
    with MediaDevices(run_dir, name="mediabroker stats") as devices:
        previous = take_sample(devices)
        if as_json:
            time.sleep(interval_s)  # a rate needs two samples
            json.dump(stats_report(previous, take_sample(devices)), out, indent=2)
            out.write("\n")
            return EXIT_OK
        _live_view(devices, previous, interval_s, count, out)
    return EXIT_OK


def _live_view(
    devices: MediaDevices, previous: StatsSample, interval_s: float, count: int | None, out: TextIO
) -> None:
    clear = "\033[H\033[2J" if out.isatty() else ""
    shown = 0
    try:
        while count is None or shown < count:
            time.sleep(interval_s)  # the refresh interval the user asked for
            sample = take_sample(devices)
            out.write(clear + render_stats(stats_report(previous, sample), devices.run_dir))
            out.write("\n" if not clear else "")
            out.flush()
            previous, shown = sample, shown + 1
    except KeyboardInterrupt:
        pass  # the way to leave a live view
