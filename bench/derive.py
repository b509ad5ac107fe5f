"""The derive cost: one camera frame made into a derived source's slot.

What a derived capture process pays per frame besides reading its parent:
`mediabroker.capture.convert.FrameConverter` from a 1920x1080 bgr24 camera
frame (the fake camera's pattern) into the next slot of a pre-faulted ring
of the daemon's slot count, for each pixel format, resize mode and size.
Back to back, median wall time; single-threaded, as in a capture process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mediabroker.capture.convert import FrameConverter
from mediabroker.capture.fake import FakeCamera
from mediabroker.framing import Framing, parse_normalize
from mediastream.ring import Ring, VideoFormat, VideoWriter

__all__ = ["DERIVE_CASES", "DeriveCost", "measure_derive_costs"]

RING_SLOTS = 8  # the daemon's default (BrokerConfig.ring_slots)
CAMERA = VideoFormat(1920, 1080)
IMAGENET = parse_normalize({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
TARGETS = ((640, 640), (1280, 720))
# (pixel format, resize mode, normalized)
DERIVE_CASES = (
    ("bgr24", "crop-and-scale", False),
    ("bgr24", "letterbox", False),
    ("rgbf32", "letterbox", False),
    ("rgbf32", "letterbox", True),
    ("rgbf32planar", "letterbox", False),
    ("rgbf32planar", "letterbox", True),
)


@dataclass(frozen=True, slots=True)
class DeriveCost:
    width: int
    height: int
    pixel_format: str
    resize_mode: str
    normalize: bool
    us: float  # median per frame

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def source_size(self) -> str:
        return f"{CAMERA.width}x{CAMERA.height}"


def measure_derive_costs(prefix: str, repeats: int) -> list[DeriveCost]:
    """Every case of `DERIVE_CASES` at every target size, in rings of our own."""
    source = np.empty(CAMERA.shape, np.uint8)
    FakeCamera(CAMERA, 0).read_into(source, 1)
    costs = []
    for width, height in TARGETS:
        for pixel_format, mode, normalized in DERIVE_CASES:
            target = VideoFormat(width, height, pixel_format)
            framing = Framing(mode, IMAGENET if normalized else None)
            us = _measure(prefix, source, target, framing, repeats)
            costs.append(DeriveCost(width, height, pixel_format, mode, normalized, us))
    return costs


def _measure(
    prefix: str, source: np.ndarray, target: VideoFormat, framing: Framing, repeats: int
) -> float:
    name = f"{prefix}derive-{target.width}x{target.height}-{target.pixel_format}"
    ring = Ring.create(name, target, RING_SLOTS)  # pre-faulted, as the daemon's rings are
    try:
        writer = VideoWriter(ring)
        slots = [writer.begin() for _ in range(RING_SLOTS)]
        convert = FrameConverter(CAMERA, target, framing)
        for slot in slots:  # warm: scratch pages, letterbox bands
            convert(source, slot)
        times = []
        for i in range(repeats):
            started = time.perf_counter_ns()
            convert(source, slots[i % RING_SLOTS])
            times.append(time.perf_counter_ns() - started)
        del slots, writer  # views into the mapping: gone before it closes
        return float(np.median(times)) / 1e3
    finally:
        ring.close()
        Ring.unlink(name)
