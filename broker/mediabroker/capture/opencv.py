"""What the OpenCV capture backends share: getting a frame into a ring slot.

Design note. Both OpenCV backends (`mediabroker.capture.files`,
`mediabroker.capture.v4l2`) decode straight into the ring slot with
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

OpenCV is imported on first use: only capture processes and probe children
load it.
"""

from __future__ import annotations

import logging

import numpy as np

from mediabroker.errors import CaptureError
from mediastream.ring import VideoFormat

__all__ = [
    "FrameStats",
    "check_format",
    "crop_and_scale",
    "fill_slot",
    "fourcc_code",
    "fourcc_text",
]

log = logging.getLogger(__name__)


def fourcc_code(text: str) -> int:
    """OpenCV's code for a four-character pixel format ("MJPG")."""
    import cv2

    code: int = cv2.VideoWriter.fourcc(*text)
    return code


def fourcc_text(code: float) -> str:
    """The four characters of an OpenCV pixel format code (as OpenCV's ``get`` returns it)."""
    value = int(code)
    return "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4)).strip("\0")


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
    crop_and_scale(out, view)
    stats.scaled_frames += 1


def crop_and_scale(image: np.ndarray, view: np.ndarray) -> None:
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


def check_format(fmt: VideoFormat) -> None:
    """Raises `CaptureError` for a ring OpenCV cannot fill (it decodes to bgr24)."""
    if fmt.pixel_format != "bgr24":
        raise CaptureError(f"OpenCV capture gives bgr24 frames, not {fmt.pixel_format}")
