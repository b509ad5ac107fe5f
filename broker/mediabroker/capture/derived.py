"""Derived video: another size, rate or pixel format of a source that runs.

The device stays in one mode; every other mode a consumer asks for is one
derived source, computed once for all who asked for it. A derived capture
process reads the parent ring like any client (woken by its doorbell), and
for each parent frame it keeps (frame-rate decimation) it crops to the
target aspect ratio, scales down and converts the colour straight into its
own ring's slot.

Crop-and-scale follows the spec's ``resizeMode``: never upscale, never
stretch; a different aspect ratio crops the centre of the frame.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mediabroker.errors import EndOfStream
from mediastream.frames import NS_PER_S, VideoFrame
from mediastream.ring import Doorbell, Ring, VideoFormat, VideoReader

__all__ = ["DerivedCamera", "crop_box"]

POLL_S = 0.25  # how often a derived reader waiting for its parent checks the daemon


def crop_box(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h): the centred part of a width x height frame with the target's
    aspect ratio, as large as possible."""
    if width * target_h > height * target_w:  # source is wider: crop the sides
        w = max(1, round(height * target_w / target_h))
        return (width - w) // 2, 0, w, height
    h = max(1, round(width * target_h / target_w))
    return 0, (height - h) // 2, width, h


class DerivedCamera:
    """A `VideoBackend` whose device is another source's ring."""

    def __init__(self, fmt: VideoFormat, frame_rate: float, params: dict[str, Any]) -> None:
        import cv2  # only derived capture processes need OpenCV

        self._cv2 = cv2
        self.format = fmt
        self.frame_rate = frame_rate
        self._daemon_pid = int(params["daemon_pid"])
        self._ring = Ring.open(str(params["ring"]))
        self._reader = VideoReader(self._ring)
        self._doorbell = Doorbell(self._ring)
        self._period_ns = int(NS_PER_S / frame_rate) if frame_rate > 0 else 0
        self._next_due_ns = 0
        self._last_seq = 0
        self._scaled: np.ndarray | None = None  # scratch for scale-then-convert
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
        cv2 = self._cv2
        height, width = src.shape[:2]
        x, y, w, h = crop_box(width, height, self.format.width, self.format.height)
        cropped = src[y : y + h, x : x + w]
        size = (self.format.width, self.format.height)
        conversion = {"rgb24": cv2.COLOR_BGR2RGB, "gray8": cv2.COLOR_BGR2GRAY}
        code = conversion.get(self.format.pixel_format)
        if code is None:
            cv2.resize(cropped, size, dst=view, interpolation=cv2.INTER_AREA)
            return
        if (w, h) == size:
            cv2.cvtColor(cropped, code, dst=view)
            return
        if self._scaled is None:
            self._scaled = np.empty((size[1], size[0], 3), np.uint8)
        cv2.resize(cropped, size, dst=self._scaled, interpolation=cv2.INTER_AREA)
        cv2.cvtColor(self._scaled, code, dst=view)

    def close(self) -> None:
        del self._reader, self._doorbell
        self._ring.close()
