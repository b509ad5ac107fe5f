"""Network cameras (RTSP, HTTP MJPEG, HLS) read by FFmpeg through OpenCV.

`probe_network_url` is what a probe child runs for the daemon
(`mediabroker.devices.network`); `NetworkCamera` is the capture backend.

Design note. A network stream can stop at any time, so nothing here may
block for good: every open and every read has a deadline (OpenCV's
``CAP_PROP_OPEN_TIMEOUT_MSEC`` and ``CAP_PROP_READ_TIMEOUT_MSEC``, which
FFmpeg's interrupt callback enforces for every protocol). A stream that
stops raises `CaptureError`; the capture process exits and its source
reconnects with backoff, its tracks muted meanwhile (`Source`). RTSP goes
over TCP (``OPENCV_FFMPEG_CAPTURE_OPTIONS``, unless the environment sets
it): over UDP a lost packet is a torn frame. The URL is shown only through
`redact_url`.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from typing import Any

import numpy as np

from mediabroker.capture.opencv import FrameStats, check_format, fill_slot
from mediabroker.errors import CaptureError
from mediabroker.urls import redact_url
from mediastream.ring import VideoFormat

__all__ = ["OPEN_TIMEOUT_MS", "READ_TIMEOUT_MS", "NetworkCamera", "probe_network_url"]

log = logging.getLogger(__name__)

OPEN_TIMEOUT_MS = 5000  # connect, handshake, first packets; within the daemon's 10 s start timeout
READ_TIMEOUT_MS = 3000  # a stream silent this long has dropped
DEFAULT_FPS = 30.0  # for a stream that states no usable rate
MAX_FPS = 240.0
MEASURE_S = 1.0  # how long a probe times a stream that states no rate
MEASURE_FRAMES = 30
OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_OPTIONS = "rtsp_transport;tcp"


def open_stream(url: str, open_timeout_ms: int, read_timeout_ms: int) -> Any:
    """An open ``cv2.VideoCapture`` on ``url`` through FFmpeg, with deadlines;
    `CaptureError` (URL redacted) when it cannot be opened in time."""
    import cv2

    if url.lower().startswith(("rtsp:", "rtsps:")):
        os.environ.setdefault(OPTIONS_ENV, RTSP_OPTIONS)  # read when the capture opens
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        open_timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        read_timeout_ms,
    ]
    started = time.monotonic()
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()  # FFmpeg's own reason is on stderr (the log has it)
        timed_out = time.monotonic() - started >= 0.9 * open_timeout_ms / 1000
        why = f" (no answer within {open_timeout_ms / 1000:g} s)" if timed_out else ""
        raise CaptureError(f"cannot open {redact_url(url)}{why}")
    return capture


def stream_fps(capture: Any) -> float:
    """The rate the stream states, or `DEFAULT_FPS` when it states none usable."""
    import cv2

    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and 0 < fps <= MAX_FPS else DEFAULT_FPS


def probe_network_url(
    url: str, open_timeout_ms: int = OPEN_TIMEOUT_MS, read_timeout_ms: int = READ_TIMEOUT_MS
) -> dict[str, Any]:
    """The size and rate of the stream at ``url``, from its first decoded
    frames (blocking, bounded by the two timeouts and `MEASURE_S`). Raises
    `CaptureError`."""
    capture = open_stream(url, open_timeout_ms, read_timeout_ms)
    try:
        ok, frame = capture.read()
        if not ok or frame is None or frame.ndim != 3:
            raise CaptureError(f"{redact_url(url)} opened but sent no frame OpenCV can decode")
        height, width = frame.shape[:2]
        fps = measured_fps(capture) if _states_no_rate(url, capture) else stream_fps(capture)
        return {"width": int(width), "height": int(height), "fps": fps}
    finally:
        capture.release()


def _states_no_rate(url: str, capture: Any) -> bool:
    """HTTP MJPEG has no rate in it: FFmpeg says 25 fps for any such stream."""
    import cv2

    from mediabroker.capture.opencv import fourcc_text

    mjpeg = fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)) == "MJPG"
    return mjpeg and url.lower().startswith(("http:", "https:"))


def measured_fps(capture: Any) -> float:
    """The rate frames come at: the median gap between frames over up to
    `MEASURE_S` or `MEASURE_FRAMES` frames (the median, since the first ones
    come at once out of FFmpeg's buffer), rounded to a whole rate."""
    started = time.monotonic()
    times = [started]
    while len(times) <= MEASURE_FRAMES and times[-1] - started < MEASURE_S:
        if not capture.grab():
            break
        times.append(time.monotonic())
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    if len(gaps) < 3 or gaps[len(gaps) // 2] <= 0:
        return DEFAULT_FPS
    return float(min(MAX_FPS, max(1, round(1 / gaps[len(gaps) // 2]))))


class NetworkCamera:
    """A network stream played as a camera, each frame as it comes: the
    stream paces itself. It runs in the device's native mode only (lower
    rates and sizes are derived sources), so it skips nothing; a stream
    whose size changed since the probe is cropped and scaled into the ring."""

    def __init__(
        self,
        fmt: VideoFormat,
        frame_rate: float,
        url: str,
        *,
        open_timeout_ms: int = OPEN_TIMEOUT_MS,
        read_timeout_ms: int = READ_TIMEOUT_MS,
    ) -> None:
        check_format(fmt)
        self.format = fmt
        self.shown = redact_url(url)
        self.stats = FrameStats()
        self._capture: Any = None
        self._capture = open_stream(url, open_timeout_ms, read_timeout_ms)
        self.frame_rate = frame_rate if frame_rate > 0 else stream_fps(self._capture)
        self._read_timeout_s = read_timeout_ms / 1000
        self._buffer: np.ndarray | None = None
        log.info("reading %s at %g fps", self.shown, self.frame_rate)

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Decode the next frame into ``view``; returns the time it came
        (CLOCK_MONOTONIC ns). Raises `CaptureError` when the stream stopped or
        sent nothing within the read timeout."""
        now = self._grab()
        target = view if self._buffer is None else self._buffer
        ok, out = self._capture.retrieve(image=target)
        if not ok or out is None:
            raise CaptureError(f"{self.shown}: a frame could not be decoded")
        if out.shape != view.shape and self._buffer is None:
            self._buffer = np.empty(out.shape, np.uint8)  # decode there from now on
            log.info(
                "%s sends %dx%d: cropping and scaling it into the ring",
                self.shown,
                out.shape[1],
                out.shape[0],
            )
            target = out
        fill_slot(out, target, view, self.stats)
        return now

    def _grab(self) -> int:
        if not self._capture.grab():
            raise CaptureError(
                f"{self.shown}: the stream stopped (nothing for "
                f"{self._read_timeout_s:g} s, or the server closed it)"
            )
        return time.monotonic_ns()

    def counters(self) -> dict[str, float]:
        return self.stats.counters()

    def close(self) -> None:
        """Release the stream and log what happened. Idempotent."""
        capture, self._capture = self._capture, None
        if capture is None:
            return
        capture.release()
        log.info("closed %s: %s", self.shown, self.stats.summary())

    def __repr__(self) -> str:
        return f"<NetworkCamera {self.shown!r} {self.frame_rate:g} fps {self.stats.summary()}>"
