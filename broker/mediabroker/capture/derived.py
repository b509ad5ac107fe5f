"""Derived video: another size, rate or pixel format of a source that runs.

The device stays in one mode; every other mode a consumer asks for is one
derived source, computed once for all who asked for it. A derived capture
process reads the parent ring like any client (woken by its doorbell), and
for each parent frame it keeps (frame-rate decimation) it crops or
letterboxes, scales down and converts the colour (or makes a float tensor)
straight into its own ring's slot (`mediabroker.capture.convert`).

Crop-and-scale follows the spec's ``resizeMode``: never upscale, never
stretch; a different aspect ratio crops the centre of the frame. Our
``letterbox`` keeps the whole frame and pads it black
(`mediabroker.framing`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mediabroker.capture.convert import FrameConverter
from mediabroker.errors import EndOfStream
from mediabroker.framing import Framing
from mediastream.frames import NS_PER_S, VideoFrame
from mediastream.ring import Doorbell, Ring, VideoFormat, VideoReader

__all__ = ["DerivedCamera"]

POLL_S = 0.25  # how often a derived reader waiting for its parent checks the daemon


class DerivedCamera:
    """A `VideoBackend` whose device is another source's ring."""

    def __init__(self, fmt: VideoFormat, frame_rate: float, params: dict[str, Any]) -> None:
        self.format = fmt
        self.frame_rate = frame_rate
        self._daemon_pid = int(params["daemon_pid"])
        # A generator's derived sizes are live before its first frame, as it is.
        self.ready_at_start = bool(params.get("ready_at_start"))
        self._ring = Ring.open(str(params["ring"]))
        self._reader = VideoReader(self._ring)
        self._doorbell = Doorbell(self._ring)
        parent = self._ring.format
        assert isinstance(parent, VideoFormat)  # a VideoReader refuses any other ring
        self._converter = FrameConverter(parent, fmt, Framing.from_params(params))
        self._period_ns = int(NS_PER_S / frame_rate) if frame_rate > 0 else 0
        self._next_due_ns = 0
        self._last_seq = 0
        self.capture_origin: tuple[int, int] | None = None  # the camera frame of the last one

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Wait for the next parent frame this rate keeps; convert it into ``view``."""
        while True:
            frame = self._next_parent_frame()
            if not self._due(frame):
                continue
            self._convert(frame.data, view)
            if frame.valid:  # the parent did not reuse the slot while we read it
                self.capture_origin = (frame.captureSeq, round(frame.captureTimestamp * NS_PER_S))
                return round(frame.timestamp * NS_PER_S)  # exact for months of uptime

    def _next_parent_frame(self) -> VideoFrame:
        while True:
            seen = self._doorbell.value()
            frame = self._reader.newest()
            if frame is not None and frame.seq > self._last_seq:
                self._last_seq = frame.seq
                return frame
            if self._ring.ended:
                raise EndOfStream("the source this derives from has ended")
            if os.getppid() != self._daemon_pid:
                raise EndOfStream("the daemon is gone")
            self._doorbell.wait(seen, POLL_S)

    def _due(self, frame: VideoFrame) -> bool:
        """Frame-rate decimation: keep a frame when its time has come, so 30 fps
        becomes exactly every second frame at 15 and every third at 10."""
        if not self._period_ns:
            return True
        captured = round(frame.timestamp * NS_PER_S)
        if captured < self._next_due_ns - self._period_ns // 2:
            return False
        late = captured - self._next_due_ns >= self._period_ns
        self._next_due_ns = (captured if late else self._next_due_ns) + self._period_ns
        return True

    def _convert(self, src: np.ndarray, view: np.ndarray) -> None:
        self._converter(src, view)

    def close(self) -> None:
        del self._reader, self._doorbell
        self._ring.close()
