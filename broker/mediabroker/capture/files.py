"""Video files played as cameras, through OpenCV (see `mediabroker.capture.opencv`).

`probe_video_file` is what a probe child runs for the daemon
(`mediabroker.devices.files`); `FileCamera` is the capture backend.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from mediabroker.capture.backend import Clock
from mediabroker.capture.opencv import FrameStats, check_format, fill_slot
from mediabroker.errors import CaptureError, EndOfStream
from mediastream.ring import VideoFormat

__all__ = ["FileCamera", "VideoFileInfo", "probe_video_file"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # for a file whose container states no usable rate
MAX_FPS = 1000.0


class VideoFileInfo:
    """What a video file's container says: size, rate and length."""

    def __init__(self, width: int, height: int, fps: float, frame_count: int) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.frame_count = frame_count

    def __repr__(self) -> str:
        return (
            f"<VideoFileInfo {self.width}x{self.height} {self.fps:g} fps {self.frame_count} frames>"
        )


def probe_video_file(path: Path) -> VideoFileInfo:
    """Open ``path`` and read its size and rate. Raises `CaptureError` when
    OpenCV cannot open or decode it."""
    capture = _open_file(path)
    try:
        return _file_info(capture, path)
    finally:
        capture.release()


def _open_file(path: Path) -> Any:
    import cv2

    if not path.is_file():
        raise CaptureError(f"video file {path} does not exist")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise CaptureError(f"OpenCV cannot open {path} as a video")
    return capture


def _file_info(capture: Any, path: Path) -> VideoFileInfo:
    import cv2

    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        raise CaptureError(f"{path} has no video frames OpenCV can decode")
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    if not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        log.warning(
            "%s states no usable frame rate (%r); playing it at %g fps", path, fps, DEFAULT_FPS
        )
        fps = DEFAULT_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return VideoFileInfo(width, height, fps, max(count, 0))


class FileCamera:
    """A video file played as a camera, in real time at the file's own rate.

    ``frame_rate`` below the file's rate keeps real time by skipping frames
    (``grab`` without conversion). At the end of the file it loops, or
    raises `EndOfStream`. Frames are decoded straight into the ring slot
    when the ring has the file's size, else cropped and scaled into it.
    """

    def __init__(
        self,
        fmt: VideoFormat,
        frame_rate: float,
        path: Path | str,
        *,
        loop: bool = True,
        clock: Clock | None = None,
    ) -> None:
        check_format(fmt)
        self.format = fmt
        self.path = Path(path)
        self.loop = loop
        self.stats = FrameStats()
        self.loops = 0
        self._capture: Any = None
        self._capture = _open_file(self.path)
        try:
            self.info = _file_info(self._capture, self.path)
        except BaseException:
            self._capture.release()
            raise
        self.frame_rate = min(frame_rate, self.info.fps) if frame_rate > 0 else self.info.fps
        self._step = self.info.fps / self.frame_rate  # file frames per delivered frame
        self._media_pos = -self._step  # file frame index of the last delivered frame
        self._decoded = -1  # file frame index of the last decoded frame
        self._clock = clock or Clock(self.frame_rate)
        native = (self.info.height, self.info.width, 3)
        self._buffer = None if native == fmt.shape else np.empty(native, np.uint8)
        self._say_how()

    @property
    def fallback_copies(self) -> int:
        return self.stats.fallback_copies

    @property
    def scaled_frames(self) -> int:
        return self.stats.scaled_frames

    def _say_how(self) -> None:
        info = self.info
        how = "straight into the ring slot"
        if self._buffer is not None:
            how = f"then cropped and scaled to {self.format.width}x{self.format.height}"
        log.info(
            "playing %s (%dx%d, %g fps, %d frames, %s) at %g fps: decoding %s",
            self.path,
            info.width,
            info.height,
            info.fps,
            info.frame_count,
            "looped" if self.loop else "once",
            self.frame_rate,
            how,
        )

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Decode the next frame into ``view``, then wait for its time; returns
        that time (CLOCK_MONOTONIC ns). Raises `EndOfStream` at the end of a
        file that does not loop, `CaptureError` when decoding fails."""
        self._media_pos += self._step
        self._skip_to(math.floor(self._media_pos + 1e-9))
        self._decode_into(view)
        return self._clock.wait_next()

    def _skip_to(self, index: int) -> None:
        """Grab (decode, no conversion) up to the frame before ``index``."""
        while self._decoded < index - 1:
            if not self._capture.grab():
                return  # the end: _decode_into deals with it
            self._decoded += 1

    def _decode_into(self, view: np.ndarray) -> None:
        target = view if self._buffer is None else self._buffer
        ok, out = self._capture.read(image=target)
        if not ok:
            out = self._restart(target)
        self._decoded += 1
        fill_slot(out, target, view, self.stats)

    def _restart(self, target: np.ndarray) -> np.ndarray:
        """At the end: rewind (or reopen) and decode the first frame, or end."""
        if not self.loop:
            raise EndOfStream(f"{self.path} ended after {self._decoded + 1} frames")
        import cv2

        self.loops += 1
        self._media_pos = self._media_pos - self._decoded - 1
        self._decoded = -1
        if not self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._reopen()
        ok, out = self._capture.read(image=target)
        if not ok:
            self._reopen()
            ok, out = self._capture.read(image=target)
        if not ok:
            raise CaptureError(f"{self.path}: no frame could be decoded after looping")
        result: np.ndarray = out
        return result

    def _reopen(self) -> None:
        self._capture.release()
        self._capture = _open_file(self.path)

    def counters(self) -> dict[str, float]:
        return {**self.stats.counters(), "loops": self.loops}

    def close(self) -> None:
        """Release the decoder and log what happened. Idempotent."""
        capture, self._capture = self._capture, None
        if capture is None:
            return
        capture.release()
        log.info("closed %s: %s loops=%d", self.path, self.stats.summary(), self.loops)

    def __repr__(self) -> str:
        return f"<FileCamera {str(self.path)!r} {self.frame_rate:g} fps {self.stats.summary()}>"
