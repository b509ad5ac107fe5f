"""Capture through OpenCV: video files played as cameras, and V4L2 cameras.

Design note. Both backends decode straight into the ring slot with
``cap.read(image=view)`` (V4L2: ``grab`` then ``retrieve(image=view)``):
OpenCV writes into the array it is given when the shape and dtype match, so
the frame lands in shared memory with no copy of ours. When they do not
match OpenCV silently allocates a new array and returns that instead, so
every read checks ``out is view``; a miss is copied (or scaled) into the
slot and counted in ``fallback_copies``. A source whose own size differs
from the ring's (a file, or a camera that rounded the size it was asked
for) is decoded into a private buffer and cropped and scaled into the slot
with ``cv2.resize(dst=view)``: that is planned, counted in ``scaled_frames``
and said once in the log. The counters and a one-line summary go to the
log when the backend closes.

OpenCV is imported on first use: only capture processes and probes load it.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mediabroker.capture.backend import Clock
from mediabroker.devices.v4l2 import (
    Mode,
    choose_mode,
    fourcc_code,
    in_use_message,
    list_capture_nodes,
)
from mediabroker.errors import CaptureError, EndOfStream
from mediastream.ring import VideoFormat

__all__ = [
    "FileCamera",
    "FrameStats",
    "V4L2Camera",
    "VideoFileInfo",
    "fill_slot",
    "probe_video_file",
]

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # for a file whose container states no usable rate
MAX_FPS = 1000.0
READ_TIMEOUT_MS = 2000  # a camera that delivers nothing for this long has failed
MAX_TIMESTAMP_AGE_NS = 1_000_000_000  # a driver timestamp older than this is not trusted


class FrameStats:
    """How frames reached the slot: counted per backend, logged at close."""

    def __init__(self) -> None:
        self.frames = 0
        self.fallback_copies = 0  # OpenCV allocated instead of writing in place
        self.scaled_frames = 0  # cropped and scaled into the slot

    def counters(self) -> dict[str, float]:
        return {
            "frames": self.frames,
            "fallbackCopies": self.fallback_copies,
            "scaledFrames": self.scaled_frames,
        }

    def summary(self) -> str:
        return (
            f"frames={self.frames} fallback_copies={self.fallback_copies} "
            f"scaled_frames={self.scaled_frames}"
        )


def fill_slot(out: np.ndarray, target: np.ndarray, view: np.ndarray, stats: FrameStats) -> None:
    """Make ``view`` hold the frame OpenCV returned as ``out`` after being
    asked to write into ``target`` (the slot itself, or a private buffer).

    Counts an allocation (``out is not target``) as a fallback copy and
    crops and scales when the frame's size is not the slot's.
    """
    stats.frames += 1
    if out is not target:
        stats.fallback_copies += 1
        if stats.fallback_copies == 1:
            log.warning(
                "OpenCV allocated a %s %s frame instead of writing into the %s %s buffer; "
                "copying (counted in fallback_copies)",
                out.shape,
                out.dtype,
                target.shape,
                target.dtype,
            )
    if out is view:
        return
    if out.shape == view.shape:
        np.copyto(view, out)
        return
    _crop_and_scale(out, view)
    stats.scaled_frames += 1


def _crop_and_scale(image: np.ndarray, view: np.ndarray) -> None:
    """The spec's crop-and-scale: the centred crop of ``image`` with the view's
    aspect ratio, resized straight into ``view``."""
    import cv2

    height, width = view.shape[:2]
    if image.ndim != view.ndim or image.shape[2:] != view.shape[2:]:
        raise CaptureError(f"cannot scale a {image.shape} frame into a {view.shape} slot")
    src_h, src_w = image.shape[:2]
    crop_w = min(src_w, round(src_h * width / height))
    crop_h = min(src_h, round(src_w * height / width))
    top, left = (src_h - crop_h) // 2, (src_w - crop_w) // 2
    crop = image[top : top + crop_h, left : left + crop_w]
    shrinking = crop_w >= width and crop_h >= height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(crop, (width, height), dst=view, interpolation=interpolation)
    if out is not view:
        np.copyto(view, out)


def _check_format(fmt: VideoFormat) -> None:
    if fmt.pixel_format != "bgr24":
        raise CaptureError(f"OpenCV capture gives bgr24 frames, not {fmt.pixel_format}")


# -- video files -----------------------------------------------------------


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
        _check_format(fmt)
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


# -- V4L2 cameras ----------------------------------------------------------


class V4L2Camera:
    """A /dev/video* camera opened through OpenCV's V4L2 backend.

    Opens the mode `choose_mode` picks (MJPG only where it gives a rate the
    raw format cannot), grabs each frame, stamps it with the driver's
    CLOCK_MONOTONIC buffer time, and retrieves it straight into the slot.
    ``identity`` re-finds the camera's node at open, since node numbers move.
    """

    def __init__(
        self,
        fmt: VideoFormat,
        frame_rate: float,
        node: Path | str,
        *,
        label: str = "",
        identity: tuple[str, ...] = (),
        modes: list[Mode] | None = None,
    ) -> None:
        _check_format(fmt)
        self.format = fmt
        self.frame_rate = frame_rate
        self.node = _current_node(Path(node), identity)
        self.label = label or str(self.node)
        self.stats = FrameStats()
        self._capture: Any = None
        self._capture = self._open(modes or [])
        self._buffer: np.ndarray | None = None  # set when the camera's size is not the ring's
        self._check_size()

    @property
    def fallback_copies(self) -> int:
        return self.stats.fallback_copies

    def _open(self, modes: list[Mode]) -> Any:
        import cv2

        capture = cv2.VideoCapture(str(self.node), cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise CaptureError(self._failure("cannot be opened"))
        fmt = self.format
        if modes:
            mode = choose_mode(modes, fmt.width, fmt.height, self.frame_rate)
            capture.set(cv2.CAP_PROP_FOURCC, fourcc_code(mode.fourcc))
            width, height = mode.width, mode.height
            log.info(
                "%s: opening %s %dx%d for a %dx%d ring",
                self.label,
                mode.fourcc,
                width,
                height,
                fmt.width,
                fmt.height,
            )
        else:
            width, height = fmt.width, fmt.height
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        capture.set(cv2.CAP_PROP_FPS, self.frame_rate)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 2)  # the newest frame, not a queue of old ones
        capture.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS)
        return capture

    def _check_size(self) -> None:
        import cv2

        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (width, height) != (self.format.width, self.format.height):
            log.info(
                "%s delivers %dx%d; cropping and scaling each frame to %dx%d",
                self.label,
                width,
                height,
                self.format.width,
                self.format.height,
            )
            self._buffer = np.empty((height, width, 3), np.uint8)

    def _failure(self, what: str) -> str:
        return in_use_message(self.label, self.node) or f"{self.label} ({self.node}) {what}"

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Grab the next frame into ``view``; returns its capture time
        (CLOCK_MONOTONIC ns). Raises `EndOfStream` when the camera was
        unplugged, `CaptureError` when it stops delivering."""
        if not self._capture.grab():
            if not self.node.exists():
                raise EndOfStream(f"{self.label} ({self.node}) was unplugged")
            raise CaptureError(self._failure("stopped delivering frames"))
        captured_ns = self._grab_time()
        target = view if self._buffer is None else self._buffer
        ok, out = self._capture.retrieve(image=target)
        if not ok or out is None:
            raise CaptureError(f"{self.label} ({self.node}): a grabbed frame could not be decoded")
        fill_slot(out, target, view, self.stats)
        return captured_ns

    def _grab_time(self) -> int:
        """The driver's buffer timestamp (CLOCK_MONOTONIC for UVC) when it is
        plausible, else now."""
        import cv2

        now = time.monotonic_ns()
        stamp = int(self._capture.get(cv2.CAP_PROP_POS_MSEC) * 1_000_000)
        return stamp if 0 <= now - stamp < MAX_TIMESTAMP_AGE_NS else now

    def counters(self) -> dict[str, float]:
        return self.stats.counters()

    def close(self) -> None:
        """Release the camera (its light goes off) and log what happened. Idempotent."""
        capture, self._capture = self._capture, None
        if capture is None:
            return
        capture.release()
        log.info("closed %s (%s): %s", self.label, self.node, self.stats.summary())

    def __repr__(self) -> str:
        return f"<V4L2Camera {self.label!r} {self.node} {self.stats.summary()}>"


def _current_node(hint: Path, identity: tuple[str, ...]) -> Path:
    """Where the camera with ``identity`` is now (it may have been renumbered)."""
    if identity:
        for node in list_capture_nodes():
            if node.identity == identity:
                return node.node
    return hint
