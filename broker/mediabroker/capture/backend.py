"""The capture backend seam: the only place that touches hardware.

A capture process drives one backend. Video backends render or decode a
frame straight into a ring slot; audio backends hand over blocks of samples.
Tests and the demo swap real devices for the fakes here and nowhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mediabroker.errors import CaptureError
from mediastream.ring import AudioFormat, VideoFormat

__all__ = [
    "AudioBackend",
    "BackendSpec",
    "Clock",
    "backend_counters",
    "VideoBackend",
    "open_audio_backend",
    "open_video_backend",
]


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

    Plain data, so it crosses the spawn boundary and shows in logs.
    """

    driver: str
    params: dict[str, Any] = field(default_factory=dict)


def open_video_backend(spec: BackendSpec, fmt: VideoFormat, frame_rate: float) -> VideoBackend:
    if spec.driver == "fake-camera":
        from mediabroker.capture.fake import FakeCamera

        return FakeCamera(fmt, frame_rate)
    if spec.driver == "file":
        from mediabroker.capture.opencv import FileCamera

        return FileCamera(fmt, frame_rate, spec.params["path"], loop=bool(spec.params["loop"]))
    if spec.driver == "v4l2":
        from mediabroker.capture.opencv import V4L2Camera
        from mediabroker.devices.v4l2 import Mode

        return V4L2Camera(
            fmt,
            frame_rate,
            spec.params["node"],
            label=str(spec.params["label"]),
            identity=tuple(spec.params["identity"]),
            modes=[Mode.from_list(m) for m in spec.params["modes"]],
        )
    if spec.driver == "derived":
        from mediabroker.capture.derived import DerivedCamera

        return DerivedCamera(fmt, frame_rate, spec.params)
    raise CaptureError(f"unknown video driver {spec.driver!r}")


def open_audio_backend(spec: BackendSpec, fmt: AudioFormat) -> AudioBackend:
    if spec.driver == "fake-microphone":
        from mediabroker.capture.fake import FakeMicrophone

        return FakeMicrophone(fmt)
    if spec.driver == "portaudio":
        # Imported here: PortAudio loads only in a capture process, which can be killed.
        from mediabroker.devices.portaudio import PortAudioMicrophone

        return PortAudioMicrophone(fmt, spec.params["name"], spec.params["hostapi"])
    raise CaptureError(f"unknown audio driver {spec.driver!r}")


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
