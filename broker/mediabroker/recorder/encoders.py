"""Video codecs and the writers behind them.

H.264 goes through PyAV (FFmpeg's libx264, which PyAV's wheels include),
installed with the ``record`` extra; without it, Motion JPEG and MPEG-4
Part 2 go through OpenCV's writer, whose headless wheel has no H.264
encoder. PyAV is imported here only, and only when a recording asks for
H.264 (or a container that defaults to it): the client library, the daemon
and the other commands never load it.

An H.264 ``.mp4`` is fragmented (a fragment per keyframe, one a second),
and a ``.mkv`` is Matroska: either stays playable up to its last fragment
however the recorder ends, SIGKILL or power loss included. OpenCV's
``.mp4`` needs its index written at the end, which a clean stop (SIGTERM,
SIGINT, --duration) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mediabroker.errors import CommandError

__all__ = [
    "CODECS",
    "CONTAINERS",
    "Codec",
    "VideoFormat",
    "VideoSink",
    "choose_codec",
    "h264_missing",
    "open_video",
    "preload",
]

EXIT_USAGE = 2
INSTALL_HINT = "pip install 'mediabroker[record]'"
X264_PRESET = "veryfast"  # about a third of medium's CPU at 640x480, files ~10% larger
KEYFRAME_EVERY_S = 1.0  # each keyframe starts an MP4 fragment: at most this much is lost on a crash
FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"


@dataclass(frozen=True)
class Codec:
    """A video codec ``--codec`` names, and what it takes."""

    name: str  # the --codec value
    label: str  # for people
    fourcc: str  # OpenCV's tag; "" for PyAV's
    quality: bool  # takes --quality
    bitrate: bool  # takes --bitrate


CODECS = {
    "h264": Codec("h264", "H.264", "", quality=True, bitrate=True),
    "mpeg4": Codec("mpeg4", "MPEG-4 Part 2", "mp4v", quality=False, bitrate=False),
    "mjpeg": Codec("mjpeg", "Motion JPEG", "MJPG", quality=True, bitrate=False),
}
CONTAINERS = {  # suffix -> codecs it may hold, the default first (when available)
    ".mp4": ("h264", "mpeg4"),
    ".mkv": ("h264",),
    ".avi": ("mjpeg",),
}


@dataclass(frozen=True)
class VideoFormat:
    """The frames a file holds."""

    width: int
    height: int
    fps: float
    color: bool  # False: 8-bit gray


class VideoSink(Protocol):
    """An open video file: frames in, `close` finishes it (idempotent)."""

    def write(self, image: np.ndarray) -> None: ...

    def close(self) -> None: ...


def h264_missing() -> str | None:
    """Why H.264 cannot be written here, or None when it can. Imports PyAV."""
    try:
        import av
    except ImportError:
        return f"H.264 needs PyAV, which is not installed ({INSTALL_HINT})"
    try:
        av.codec.Codec("libx264", "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        return f"this PyAV ({av.__version__}) has no libx264 encoder"
    return None


def choose_codec(suffix: str, requested: str | None) -> Codec:
    """The codec for a file ending in ``suffix`` (".mp4"): ``requested``, or
    the container's first that can be written here. `CommandError` (2)
    when the container cannot hold it or nothing here writes it."""
    allowed = CONTAINERS[suffix]
    if requested is not None and requested not in allowed:
        raise CommandError(
            f"a {suffix} file cannot hold {requested}; it takes {', '.join(allowed)}", EXIT_USAGE
        )
    for name in (requested,) if requested else allowed:
        reason = h264_missing() if name == "h264" else None
        if reason is None:
            return CODECS[name]
    others = ".avi (Motion JPEG) or .mp4 (MPEG-4 Part 2)"
    raise CommandError(f"{reason}; without it, record to {others}", EXIT_USAGE)


def preload(codec: Codec) -> None:
    """Import the library that writes ``codec`` now: OpenCV takes ~0.3 s to
    import, PyAV ~0.2 s, frames the recorder would miss were it done at the
    first frame."""
    if codec.name == "h264":
        import av  # noqa: F401
    else:
        import cv2  # noqa: F401


def open_video(
    path: Path, codec: Codec, fmt: VideoFormat, quality: int | None, bitrate: int | None
) -> VideoSink:
    """An open writer of ``fmt`` frames to ``path``. Raises `OSError` (or a
    subclass) when the file cannot be written."""
    if codec.name == "h264":
        return PyAVVideo(path, fmt, quality, bitrate)
    return OpenCVVideo(path, codec, fmt, quality)


def x264_options(quality: int | None, bitrate: int | None) -> dict[str, str]:
    """libx264's options: constant quality (CRF) unless a bitrate is set.
    ``quality`` 1..100 maps onto CRF 51..0: 55 is x264's default CRF 23."""
    options = {"preset": X264_PRESET}
    if bitrate is None:
        options["crf"] = str(round((100 - (55 if quality is None else quality)) * 51 / 100))
    return options


class PyAVVideo:
    """H.264 through PyAV: fragmented MP4 or Matroska, constant frame rate
    (frame n at n / fps), yuv420p (what every player decodes)."""

    def __init__(
        self, path: Path, fmt: VideoFormat, quality: int | None, bitrate: int | None
    ) -> None:
        import av

        self.path = path
        self._from_ndarray = av.VideoFrame.from_ndarray
        self._input = "bgr24" if fmt.color else "gray"
        self._pts = 0
        # Each packet goes to the file at once (not held in a 32 KiB buffer),
        # so a killed recorder leaves every fragment the muxer finished.
        options = {"flush_packets": "1"}
        if path.suffix.lower() == ".mp4":
            options["movflags"] = FRAGMENTED_MP4
        self._container: Any = av.open(str(path), "w", container_options=options)
        try:
            self._stream = self._add_stream(fmt, quality, bitrate)
        except BaseException:
            self._container.close()
            raise

    def __repr__(self) -> str:
        state = "open" if self._container is not None else "closed"
        return f"<PyAVVideo {self.path.name} H.264 frames={self._pts} {state}>"

    def _add_stream(self, fmt: VideoFormat, quality: int | None, bitrate: int | None) -> Any:
        rate = Fraction(fmt.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = fmt.width, fmt.height, "yuv420p"
        stream.gop_size = max(1, round(fmt.fps * KEYFRAME_EVERY_S))
        stream.options = x264_options(quality, bitrate)
        if bitrate is not None:
            stream.bit_rate = bitrate
        return stream

    def write(self, image: np.ndarray) -> None:
        """Encode one frame (BGR, or 2-D gray) as the next of the file."""
        frame = self._from_ndarray(image, format=self._input)
        frame.pts = self._pts
        self._pts += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and close the file. Idempotent."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()


class OpenCVVideo:
    """Motion JPEG (.avi) or MPEG-4 Part 2 (.mp4) through `cv2.VideoWriter`."""

    def __init__(self, path: Path, codec: Codec, fmt: VideoFormat, quality: int | None) -> None:
        import cv2

        self.path = path
        fourcc = cv2.VideoWriter.fourcc(*codec.fourcc)
        size = (fmt.width, fmt.height)
        if quality is None:
            self._writer: Any = cv2.VideoWriter(str(path), fourcc, fmt.fps, size, fmt.color)
        else:
            # With a quality, OpenCV picks its own MJPEG writer (FFmpeg's
            # refuses the property), which applies it only when set after.
            params = [cv2.VIDEOWRITER_PROP_QUALITY, quality]
            params += [cv2.VIDEOWRITER_PROP_IS_COLOR, int(fmt.color)]
            self._writer = cv2.VideoWriter(str(path), cv2.CAP_ANY, fourcc, fmt.fps, size, params)
            self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
        if not self._writer.isOpened():
            raise OSError(f"OpenCV cannot write {path.name} ({codec.label} at {fmt.fps:g} fps)")

    def __repr__(self) -> str:
        return f"<OpenCVVideo {self.path.name} {'open' if self._writer else 'closed'}>"

    def write(self, image: np.ndarray) -> None:
        """Append one frame (BGR, or 2-D gray)."""
        self._writer.write(image)

    def close(self) -> None:
        """Finish the file (an MP4 gets its index). Idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()
