"""What one benchmark cell is, and what it measures: plain data that crosses
the spawn boundary between the orchestrator, producers and readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "DAEMON_PATHS",
    "FRAME_PATHS",
    "MEDIABROKER_PATHS",
    "PACED_FPS",
    "PEER_PATHS",
    "Cell",
    "CellResult",
    "ProducerSpec",
    "ReaderReport",
    "ReaderSpec",
    "TransportPath",
]

TransportPath = Literal[
    "daemon",
    "daemon-async",
    "daemon-pair",
    "ring",
    "notify",
    "futex",
    "queue",
    "pyzmq",
    "imagezmq",
]
# readers on the daemon; "daemon-pair": even readers read(), odd ones aread(), same frames
DAEMON_PATHS: tuple[TransportPath, ...] = ("daemon", "daemon-async", "daemon-pair")
MEDIABROKER_PATHS: tuple[TransportPath, ...] = (*DAEMON_PATHS, "ring")
PEER_PATHS: tuple[TransportPath, ...] = ("queue", "pyzmq", "imagezmq")
FRAME_PATHS: tuple[TransportPath, ...] = ("ring", "queue", "pyzmq", "imagezmq")
PACED_FPS = 30.0

PATH_LABELS: dict[TransportPath, str] = {
    "daemon": "mediabroker (daemon)",
    "daemon-async": "mediabroker (daemon, aread)",
    "daemon-pair": "mediabroker (daemon, read + aread on the same frames)",
    "ring": "mediabroker (ring)",
    "notify": "bare ZeroMQ notify",
    "futex": "bare futex wake",
    "queue": "multiprocessing.Queue",
    "pyzmq": "pyzmq copy=False",
    "imagezmq": "imagezmq PUB/SUB",
}


@dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: a transport, a frame size, a reader count, a rate."""

    path: TransportPath
    width: int
    height: int
    readers: int
    fps: float  # 0: flat out
    duration_s: float

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}" if self.width else "-"  # notify: no frame

    @property
    def mode(self) -> str:
        return f"{self.fps:g} fps" if self.fps else "flat out"

    @property
    def label(self) -> str:
        return f"{self.path} {self.size} x{self.readers} {self.mode}"


@dataclass(frozen=True, slots=True)
class ProducerSpec:
    """What a producer process sends: frames (or bare notifications) at ``fps``."""

    path: TransportPath
    width: int
    height: int
    fps: float
    endpoint: str  # ipc:// or tcp:// to bind; unused by the queue producer
    ring_name: str  # the ring's segment (created by the orchestrator) or the futex's
    parent_pid: int


@dataclass(frozen=True, slots=True)
class ReaderSpec:
    """What a reader process reads, and from where."""

    path: TransportPath
    width: int
    height: int
    fps: float
    endpoint: str  # the producer's endpoint, or the daemon's run dir
    ring_name: str
    index: int
    max_samples: int = 1 << 18  # latencies kept; older ones are overwritten

    @property
    def reads_with(self) -> TransportPath:
        """The path this reader takes: a pair cell's odd readers use ``aread()``."""
        if self.path == "daemon-pair":
            return "daemon-async" if self.index % 2 else "daemon"
        return self.path


@dataclass(slots=True)
class ReaderReport:
    """A reader's figures over the window (sent back over a pipe)."""

    index: int
    latencies_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seqs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per latency
    frames: int = 0
    dropped: int = 0  # frames the producer stamped that this reader never saw
    torn: int = 0  # frames whose stamp disagreed with their sequence number
    cpu_s: float = 0.0
    rss_start: int = 0
    rss_end: int = 0
    fds_start: int = 0
    fds_end: int = 0
    pid: int = 0
    error: str = ""


@dataclass(slots=True)
class CellResult:
    """The figures of one cell, as the report shows them (times in microseconds)."""

    cell: Cell
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    fps_per_reader: float = 0.0
    dropped_pct: float = 0.0
    torn: int = 0
    reader_us: float = float("nan")  # reader CPU per delivered frame, mean over readers
    producer_us: float = float("nan")  # producer CPU per produced frame
    total_us: float = float("nan")  # producer + every reader, per frame
    produced_fps: float = 0.0
    samples: int = 0
    producer_parts_us: dict[str, float] = field(default_factory=dict)
    # daemon-pair: p50 over the frames both kinds of reader got, "read" and "aread"
    paired_p50_us: dict[str, float] = field(default_factory=dict)
    reader_memory: list[dict[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
