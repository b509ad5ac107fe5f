"""V4L2 cameras through OpenCV's V4L2 backend (see `mediabroker.capture.opencv`).

`query_modes` is what a probe child runs for the daemon
(`mediabroker.devices.v4l2`); `V4L2Camera` is the capture backend, and
`choose_mode` picks the mode it opens.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mediabroker.capture.opencv import FrameStats, check_format, fill_slot, fourcc_code, fourcc_text
from mediabroker.devices.v4l2 import Mode, in_use_message, list_capture_nodes
from mediabroker.errors import CaptureError, EndOfStream
from mediastream.ring import VideoFormat

__all__ = ["CANDIDATE_SIZES", "V4L2Camera", "choose_mode", "query_modes"]

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 2000  # a camera that delivers nothing for this long has failed
MAX_TIMESTAMP_AGE_NS = 1_000_000_000  # a driver timestamp older than this is not trusted
CANDIDATE_SIZES = (
    (160, 120),
    (320, 240),
    (640, 480),
    (800, 600),
    (1280, 720),
    (1920, 1080),
    (2560, 1440),
    (3840, 2160),
)
PROBE_FOURCCS = ("YUYV", "MJPG")
PROBE_RATE = 120.0  # ask for more than any camera gives; the driver clamps to its best


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
        check_format(fmt)
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


def choose_mode(modes: list[Mode], width: int, height: int, rate: float) -> Mode:
    """The mode to open for a ``width`` x ``height`` ring at ``rate``: the
    smallest size that covers it, and at that size the raw format unless
    MJPG gives a higher rate that the request needs."""
    covering = [m for m in modes if m.width >= width and m.height >= height] or [max(modes)]
    area = min(m.width * m.height for m in covering)
    candidates = [m for m in covering if m.width * m.height == area]
    raw = [m for m in candidates if m.fourcc != "MJPG"]
    mjpg = [m for m in candidates if m.fourcc == "MJPG"]
    best_raw = max(raw, key=lambda m: m.fps, default=None)
    best_mjpg = max(mjpg, key=lambda m: m.fps, default=None)
    if best_raw is None:
        assert best_mjpg is not None
        return best_mjpg
    if best_mjpg is not None and best_raw.fps < rate and best_mjpg.fps > best_raw.fps:
        return best_mjpg
    return best_raw


def query_modes(node: Path) -> list[Mode]:
    """The modes ``node`` accepts, asked through OpenCV's properties: for each
    pixel format and candidate size, set it and read back what the driver
    kept. The device's own current mode comes first. What a probe child runs
    for the daemon (`mediabroker.devices.v4l2.probe_modes`). Raises `CaptureError`."""
    import cv2

    capture = cv2.VideoCapture(str(node), cv2.CAP_V4L2)
    try:
        if not capture.isOpened():
            raise CaptureError(in_use_message(str(node), node) or f"cannot open {node} for probing")
        modes = [_current_mode(capture)]
        for fourcc in PROBE_FOURCCS:
            for width, height in CANDIDATE_SIZES:
                capture.set(cv2.CAP_PROP_FOURCC, fourcc_code(fourcc))
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                capture.set(cv2.CAP_PROP_FPS, PROBE_RATE)
                mode = _current_mode(capture)
                if mode.fourcc == fourcc and mode not in modes:
                    modes.append(mode)
        return modes
    finally:
        capture.release()


def _current_mode(capture: Any) -> Mode:
    import cv2

    return Mode(
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        float(capture.get(cv2.CAP_PROP_FPS)),
        fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
    )
