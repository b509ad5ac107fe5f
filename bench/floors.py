"""The physical floor for a frame's bytes, measured in this process.

``copy``: one frame copied (``np.copyto``) from private memory into the
next slot of a pre-faulted shared-memory ring with the daemon's slot count:
what any transport that lands a camera frame in shared memory must at least
pay. ``render``: the fake camera drawing its pattern into the next slot
(`FakeCamera.read_into`): what mediabroker's capture loop pays per frame
besides its own overhead; its memory traffic is a copy's.

Each is measured back to back ("flat out") and once per 1/30 s ("paced"):
at 30 fps the caches are cold again by the next frame on this kind of
machine, and a copy costs up to several times more. Medians of wall time;
the work is CPU-bound and single-threaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mediabroker.capture.fake import FakeCamera
from mediastream.ring import Ring, VideoFormat, VideoWriter

from .specs import PACED_FPS

__all__ = ["CopyFloor", "measure_copy_floor"]


RING_SLOTS = 8  # the daemon's default (BrokerConfig.ring_slots)


@dataclass(frozen=True, slots=True)
class CopyFloor:
    width: int
    height: int
    copy_us: float  # back to back
    render_us: float
    paced_copy_us: float  # one per 1/30 s
    paced_render_us: float

    def copy_for(self, fps: float) -> float:
        return self.paced_copy_us if fps else self.copy_us

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def gbytes_per_s(self) -> float:
        return self.width * self.height * 3 / (self.copy_us * 1e3)


def _median_us(step: Callable[[int], object], repeats: int, period_s: float = 0.0) -> float:
    for i in range(3):  # warm the allocator and the page tables
        step(i)
    times = []
    for i in range(repeats):
        if period_s:
            time.sleep(period_s)  # the measurement: what a frame costs at this rate
        started = time.perf_counter_ns()
        step(i)
        times.append(time.perf_counter_ns() - started)
    return float(np.median(times)) / 1e3


def measure_copy_floor(
    width: int, height: int, prefix: str, repeats: int, paced_repeats: int
) -> CopyFloor:
    """Copy and render floors for one frame size, in a ring of our own."""
    fmt = VideoFormat(width, height)
    name = f"{prefix}floor-{width}x{height}"
    ring = Ring.create(name, fmt, RING_SLOTS)  # pre-faulted, as the daemon's rings are
    try:
        return _measure(ring, fmt, repeats, paced_repeats)
    finally:
        ring.close()
        Ring.unlink(name)


def _measure(ring: Ring, fmt: VideoFormat, repeats: int, paced_repeats: int) -> CopyFloor:
    writer = VideoWriter(ring)
    slots = [writer.begin() for _ in range(RING_SLOTS)]
    source = np.random.default_rng(0).integers(0, 256, fmt.shape, np.uint8)
    camera = FakeCamera(fmt, 0)

    def copy(i: int) -> None:
        np.copyto(slots[i % RING_SLOTS], source)

    def render(i: int) -> None:
        camera.read_into(slots[i % RING_SLOTS], i)

    period = 1 / PACED_FPS
    return CopyFloor(
        fmt.width,
        fmt.height,
        _median_us(copy, repeats),
        _median_us(render, repeats),
        _median_us(copy, paced_repeats, period),
        _median_us(render, paced_repeats, period),
    )
