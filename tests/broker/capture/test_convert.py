"""mediabroker.capture.convert: each derived pixel format against a
straightforward numpy reference, letterbox bands, and no allocation per frame.

Scaling is OpenCV's INTER_AREA by design, so the reference scales with the
same call; the crop, the placement, the colour order and the arithmetic of
the tensor formats are numpy's own.
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from mediabroker.capture.convert import FrameConverter
from mediabroker.errors import CaptureError
from mediabroker.framing import Framing, Layout, Normalize, frame_layout, parse_normalize
from mediastream.ring import VideoFormat

CAMERA = VideoFormat(1280, 720)
IMAGENET = parse_normalize({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
FORMATS = ["bgr24", "rgb24", "gray8", "rgbf32", "rgbf32planar"]


def camera_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, CAMERA.shape, np.uint8)


def reference(
    src: np.ndarray, target: VideoFormat, layout: Layout, normalize: Normalize | None
) -> np.ndarray:
    """What the slot must hold, from first principles."""
    crop, content = layout.crop, layout.content
    part = src[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width]
    if (crop.width, crop.height) != (content.width, content.height):
        part = cv2.resize(part, (content.width, content.height), interpolation=cv2.INTER_AREA)
    fmt = target.pixel_format
    black: np.ndarray = np.zeros(3)
    if fmt == "bgr24":
        image = part.astype(np.float64)
    elif fmt == "rgb24":
        image = part[..., ::-1].astype(np.float64)
    elif fmt == "gray8":  # ITU-R BT.601 luma, as OpenCV's BGR2GRAY
        image = np.rint(part @ np.array([0.114, 0.587, 0.299]))
        black = np.zeros(())
    else:
        n = normalize or Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        mean, std = np.array(n.mean), np.array(n.std)
        image = (part[..., ::-1] / 255.0 - mean) / std
        black = (0.0 - mean) / std
    out = np.empty((target.height, target.width, *black.shape))
    out[...] = black
    out[content.y : content.y + content.height, content.x : content.x + content.width] = image
    return out.transpose(2, 0, 1) if fmt == "rgbf32planar" else out


def convert(target: VideoFormat, framing: Framing, src: np.ndarray) -> tuple[np.ndarray, Layout]:
    converter = FrameConverter(CAMERA, target, framing)
    view = np.full(target.shape, 99, target.dtype)  # what a reused slot held before
    converter(src, view)
    return view, converter.layout


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["crop-and-scale", "letterbox"])
@pytest.mark.parametrize("size", [(640, 640), (320, 180), (1280, 720), (640, 720)], ids=str)
def test_conversion_matches_the_reference(fmt: str, mode: str, size: tuple[int, int]) -> None:
    target = VideoFormat(*size, fmt)
    src = camera_frame()
    view, layout = convert(target, Framing(mode), src)
    assert layout == frame_layout(1280, 720, *size, mode)
    assert view.shape == target.shape and view.dtype == target.dtype
    want = reference(src, target, layout, None)
    tolerance = 1 if fmt == "gray8" else (1e-6 if view.dtype == np.float32 else 0)
    assert np.abs(view.astype(np.float64) - want).max() <= tolerance


@pytest.mark.parametrize("fmt", ["rgbf32", "rgbf32planar"])
@pytest.mark.parametrize("mode", ["crop-and-scale", "letterbox"])
def test_normalize_matches_the_reference(fmt: str, mode: str) -> None:
    """(x / 255 - mean) / std per RGB channel; letterbox bands are black
    normalised, (0 - mean) / std, as a black camera pixel would be."""
    target = VideoFormat(640, 640, fmt)
    src = camera_frame(1)
    view, layout = convert(target, Framing(mode, IMAGENET), src)
    want = reference(src, target, layout, IMAGENET)
    assert np.abs(view - want).max() <= 1e-5


def test_unnormalised_tensors_lie_in_0_to_1() -> None:
    src = np.zeros(CAMERA.shape, np.uint8)
    src[:, :640] = 255
    view, _ = convert(VideoFormat(320, 180, "rgbf32"), Framing(), src)
    assert view.min() == 0.0 and view.max() == 1.0


def test_letterbox_bands_are_written_once_per_slot() -> None:
    """A slot's bands stay black when the image changes: they are written
    the first time a slot is used, and nothing else writes them."""
    target = VideoFormat(320, 320)
    converter = FrameConverter(CAMERA, target, Framing("letterbox"))
    slots = [np.full(target.shape, 99, np.uint8) for _ in range(2)]
    for seed, slot in enumerate(slots * 2):
        converter(camera_frame(seed), slot)
    content = converter.layout.content
    for slot in slots:
        assert not slot[: content.y].any() and not slot[content.y + content.height :].any()


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_allocation_per_frame(fmt: str) -> None:
    """After the first frame, a conversion allocates nothing of a frame's size."""
    target = VideoFormat(640, 640, fmt)
    converter = FrameConverter(CAMERA, target, Framing("letterbox", IMAGENET))
    view = np.empty(target.shape, target.dtype)
    src = camera_frame()
    converter(src, view)
    tracemalloc.start()
    try:
        for _ in range(3):
            converter(src, view)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{peak} bytes allocated converting {fmt}"


def test_a_parent_that_is_not_bgr24_is_refused() -> None:
    with pytest.raises(CaptureError, match="bgr24"):
        FrameConverter(VideoFormat(64, 64, "rgb24"), VideoFormat(32, 32), Framing())
