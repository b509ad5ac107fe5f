"""The capture backend seam: what a capture process drives, and how it is named.

A capture process drives one backend. Video backends render or decode a
frame straight into a ring slot; audio backends hand over blocks of samples.
`BackendSpec` names the driver and its parameters (the daemon builds it, the
capture process opens it through `mediabroker.capture.registry`). Tests and
the demo swap real devices for the fakes here and nowhere else. This module
imports no driver: the daemon may import it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mediabroker.urls import redact_url
from mediastream.ring import AudioFormat, VideoFormat

__all__ = [
    "AudioBackend",
    "BackendSpec",
    "Clock",
    "RELAY_DRIVER",
    "backend_counters",
    "capture_origin",
    "VideoBackend",
]


RELAY_DRIVER = "relay"  # a generator's staging ring (capture.relay): the daemon only names it


def capture_origin(backend: object) -> tuple[int, int] | None:
    """The camera frame (seq, monotonic ns) a derived backend's last frame was
    made from (its ``capture_origin``); None: the backend is the camera."""
    origin = getattr(backend, "capture_origin", None)
    return origin if isinstance(origin, tuple) else None


def backend_counters(backend: object) -> dict[str, float]:
    """What a backend counts (frames, fallback copies, latency, block size, ...),
    for the daemon's stats and track settings; {} for one that counts nothing."""
    counters = getattr(backend, "counters", None)
    return dict(counters()) if callable(counters) else {}


class VideoBackend(Protocol):
    format: VideoFormat
    frame_rate: float

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Fill ``view`` with the next frame; return its capture time in
        CLOCK_MONOTONIC ns. Raises `EndOfStream` or `CaptureError`."""
        ...

    def close(self) -> None: ...


class AudioBackend(Protocol):
    format: AudioFormat

    def read_block(self) -> tuple[np.ndarray, int]:
        """The next (frames x channels float32) block and the CLOCK_MONOTONIC ns
        of its first sample. Raises `EndOfStream` or `CaptureError`."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """What a capture process opens: a driver name and its parameters.

    Plain data, so it crosses the spawn boundary and shows in logs (its
    repr redacts a ``url``: camera URLs hold passwords).
    """

    driver: str
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        params = dict(self.params)
        if isinstance(params.get("url"), str):
            params["url"] = redact_url(params["url"])
        return f"BackendSpec(driver={self.driver!r}, params={params!r})"


class Clock:
    """Paces a capture loop at ``rate`` ticks per second on absolute deadlines,
    so the rate does not drift with the time each tick takes; ``rate`` 0 runs
    flat out. A loop that falls a whole tick behind skips ahead, as a
    camera drops frames, instead of bursting to catch up."""

    def __init__(self, rate: float) -> None:
        self.period_ns = int(1e9 / rate) if rate > 0 else 0
        self._next_ns = time.monotonic_ns()

    def wait_next(self) -> int:
        """Sleep until the next tick; return the time woken (CLOCK_MONOTONIC ns)."""
        if self.period_ns:
            now = time.monotonic_ns()
            if now < self._next_ns:
                time.sleep((self._next_ns - now) / 1e9)
            elif now - self._next_ns > self.period_ns:
                self._next_ns = now
            self._next_ns += self.period_ns
        return time.monotonic_ns()
