"""Figures for ``mediabroker stats``: what each source and process costs now.

Root and the daemon's own user see every session; anyone else sees the
sessions of its own uid, and among a source's holders only its own tracks
(``holderCount`` counts them all): no user learns another's process names,
pids or track ids.

The daemon reports counters and totals (frames written, drops, CPU seconds,
bytes) and one rate it measures itself, the same for every observer: each
source's frames a second over the last few seconds, and its drops, sampled
from its ring (`mediabroker.sources.rates`). Other rates (CPU %, drops per
interval) are differences between two reports, computed by whoever asks
(`mediabroker.cli.inspect`), so the daemon keeps no per-observer state.
`mediabroker.metrics` renders a reply for Prometheus.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psutil

from mediabroker.daemon.tracks import holder_name
from mediastream.errors import NotReadableError
from mediastream.ring import Ring, VideoFormat

if TYPE_CHECKING:
    from mediabroker.config import BrokerConfig
    from mediabroker.daemon.sessions import Session
    from mediabroker.sources import Source
    from mediabroker.sources.rates import FrameMeter, RateBook

__all__ = [
    "measured_figures",
    "process_figures",
    "session_row",
    "source_figures",
    "source_row",
    "stats_reply",
]

log = logging.getLogger(__name__)


def stats_reply(
    viewer: Session,
    sessions: Iterable[Session],
    sources: Iterable[Source],
    counters: dict[str, int],
    config: BrokerConfig,
    rates: RateBook | None = None,
) -> dict[str, Any]:
    """What the daemon holds now, as ``viewer`` may see it: for ``mediabroker
    stats``, ``/metrics`` and tests. ``rates`` None: no measured rates."""
    sources = list(sources)
    visible = list(sessions)
    if viewer.peer.uid not in (0, os.getuid()):
        visible = [s for s in visible if s.peer.uid == viewer.peer.uid]
        own = {holder_name(t) for s in visible for t in s.tracks}
        rows = [_own_holders(source_row(s, config, rates), own) for s in sources]
    else:
        rows = [source_row(s, config, rates) for s in sources]
    return {
        "pid": os.getpid(),
        "sessions": [session_row(s) for s in visible],
        "sources": rows,
        "processes": process_figures(sources),
        "counters": dict(counters),
    }


def session_row(session: Session) -> dict[str, Any]:
    return {
        "name": session.name,
        "pid": session.peer.pid,
        "uid": session.peer.uid,
        "gid": session.peer.gid,
        "tracks": sorted(session.tracks),
        "delivered": session.delivered,
        "discarded": session.discarded,
    }


def _own_holders(row: dict[str, Any], own: set[str]) -> dict[str, Any]:
    return {**row, "holders": [h for h in row["holders"] if h in own]}


def source_row(
    source: Source, config: BrokerConfig, rates: RateBook | None = None
) -> dict[str, Any]:
    return {
        "id": source.id,
        "deviceId": source.device.device_id,
        "label": source.device.label,
        "state": source.state.value,
        "holders": source.holders,
        "holderCount": len(source.holders),
        "capture": dict(source.counters),
        "pid": source.pid,
        "ring": source.ring_name,
        **source_figures(source, config),
        **measured_figures(rates.meter(source.id) if rates is not None else None),
    }


def measured_figures(meter: FrameMeter | None) -> dict[str, Any]:
    """The daemon's own measurement of a source (`mediabroker.sources.rates`):
    frames (or audio sample frames) a second over its last seconds, null
    until it sampled the ring twice; frames dropped so far."""
    rate = meter.rate if meter is not None else None
    return {
        "measuredRate": None if rate is None else round(rate, 3),
        "droppedFrames": meter.dropped if meter is not None else 0,
    }


def source_figures(source: Source, config: BrokerConfig) -> dict[str, Any]:
    """Format, nominal rate, frames written so far (video frames or audio
    sample frames), the newest frame's CLOCK_MONOTONIC ns and segment bytes."""
    fmt = source.format
    figures: dict[str, Any] = {"frameRate": source.frame_rate}
    if isinstance(fmt, VideoFormat):
        figures.update(
            kind="video", width=fmt.width, height=fmt.height, pixelFormat=fmt.pixel_format
        )
    else:
        figures.update(kind="audio", sampleRate=fmt.sample_rate, channels=fmt.channels)
    figures.update(frames=0, newestNs=0, shmBytes=0)
    try:
        figures["shmBytes"] = (config.shm_dir / source.ring_name).stat().st_size
        with Ring.open(source.ring_name, shm_dir=config.shm_dir) as ring:
            figures["frames"] = int(ring.header["newest"])
            figures["newestNs"] = int(ring.header["newest_ns"])
    except (OSError, NotReadableError):
        pass  # not created yet, or closing: zeros say so
    return figures


def _role(process: psutil.Process, roles: dict[int, str]) -> str:
    if process.pid in roles:
        return roles[process.pid]
    if any("resource_tracker" in part for part in process.cmdline()):
        return "resource tracker"  # multiprocessing's, started with the first capture
    return process.name()


def process_figures(sources: Iterable[Source]) -> list[dict[str, Any]]:
    """The daemon and each of its child processes: role, CPU seconds, RSS."""
    roles = {s.pid: f"capture {s.id}" for s in sources if s.pid is not None}
    me = psutil.Process(os.getpid())
    try:
        processes = [me, *me.children(recursive=True)]
    except psutil.Error:
        processes = [me]
    figures = []
    for process in processes:
        try:
            with process.oneshot():
                cpu = process.cpu_times()
                figures.append(
                    {
                        "pid": process.pid,
                        "role": "daemon" if process is me else _role(process, roles),
                        "cpuSeconds": cpu.user + cpu.system,
                        "rssBytes": process.memory_info().rss,
                    }
                )
        except psutil.Error:
            continue  # exited while we looked
    return figures
