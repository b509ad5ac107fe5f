"""The daemon's settings. Issue-level TOML loading builds on `BrokerConfig`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mediastream.paths import resolve_run_dir, resolve_shm_prefix
from mediastream.ring import SHM_DIR, check_segment_name

__all__ = ["BrokerConfig", "FileSource"]


@dataclass(frozen=True, slots=True)
class FileSource:
    """A video file the daemon plays as a camera. Only the daemon's own
    configuration names files: clients can never make it open a path."""

    path: Path
    label: str = ""
    loop: bool = True


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    run_dir: Path = field(default_factory=resolve_run_dir)
    shm_prefix: str = field(default_factory=resolve_shm_prefix)
    shm_dir: Path = SHM_DIR
    fake_devices: bool = False
    file_sources: tuple[FileSource, ...] = ()
    device_scan_s: float = 1.0  # how often the device list is re-read (hot-plug)
    ring_slots: int = 8
    audio_ring_s: float = 2.0  # seconds of audio an audio ring holds
    idle_close_s: float = 3.0  # grace before a source nobody uses closes
    heartbeat_s: float = 0.5  # how often clients and the daemon say they live
    session_timeout_s: float = 1.5  # missed heartbeats before a session ends
    source_start_timeout_s: float = 10.0
    stop_deadline_s: float = 3.0  # SIGTERM to SIGKILL for capture processes
    log_level: int = logging.INFO

    def __post_init__(self) -> None:
        check_segment_name(self.shm_prefix + "x")
        if self.ring_slots < 2:
            raise ValueError(f"ring_slots is {self.ring_slots}; a ring needs at least 2")
        if self.session_timeout_s <= self.heartbeat_s:
            raise ValueError("session_timeout_s must be longer than heartbeat_s")
