"""What a generator's relay costs per frame: ``python -m bench.relay_copy``.

The relay (`mediabroker.capture.relay`) copies each produced frame from the
writer's staging ring into the daemon's ring with ``pread`` (slot header),
``preadv`` (pixels, straight into the claimed slot) and ``pread`` again,
once per frame whatever the number of readers. This times that copy, in
this process, on real /dev/shm files, for bgr24 (the straight copy) and
rgb24 (one scratch and a colour conversion), against a plain numpy copy of
the same frame (the floor: one memcpy). It leaves nothing in /dev/shm.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "broker"), str(REPO / "client")]

from mediabroker.capture.relay import StagingFile  # noqa: E402
from mediastream.generator import STAGING_SLOTS  # noqa: E402
from mediastream.ring import SHM_DIR, Ring, VideoFormat, VideoWriter  # noqa: E402

SIZES = {"640x480": (640, 480), "1080p": (1920, 1080)}


def time_copies(width: int, height: int, pixel_format: str, frames: int) -> dict[str, float]:
    """Median microseconds per frame: the relay's copy and a numpy memcpy."""
    import cv2

    tag = f"mbbenchrelay{os.getpid()}-{secrets.token_hex(4)}."
    staging = Ring.create(tag + "gen", VideoFormat(width, height, pixel_format), STAGING_SLOTS)
    target = Ring.create(tag + "ring", VideoFormat(width, height), 8)
    try:
        writer, out = VideoWriter(staging), VideoWriter(target)
        view = writer.begin()
        view[...] = 7
        writer.commit(time.monotonic_ns(), time.time_ns())
        fd = os.open(SHM_DIR / staging.name, os.O_RDONLY)
        source = StagingFile(fd, VideoFormat(width, height, pixel_format), STAGING_SLOTS)
        scratch = np.empty(view.shape, np.uint8) if pixel_format != "bgr24" else None
        relay, floor = [], []
        try:
            for _ in range(frames):
                slot = out.begin()
                started = time.perf_counter_ns()
                source.slot_header(writer._index)
                source.read_pixels(writer._index, scratch if scratch is not None else slot)
                source.slot_header(writer._index)
                if scratch is not None:
                    cv2.cvtColor(scratch, cv2.COLOR_RGB2BGR, dst=slot)
                relay.append(time.perf_counter_ns() - started)
                started = time.perf_counter_ns()
                np.copyto(slot, view)
                floor.append(time.perf_counter_ns() - started)
                out.commit(time.monotonic_ns(), time.time_ns())
        finally:
            source.close()
        del writer, out, view, slot
    finally:
        for ring in (staging, target):
            ring.close()
            Ring.unlink(ring.name)
    return {"relay_us": statistics.median(relay) / 1e3, "memcpy_us": statistics.median(floor) / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    print("| frame | pixel format | relay copy per frame | numpy memcpy (floor) |")
    print("| --- | --- | --- | --- |")
    for name, (width, height) in SIZES.items():
        for pixel_format in ("bgr24", "rgb24"):
            result = time_copies(width, height, pixel_format, args.frames)
            print(
                f"| {name} | {pixel_format} | {result['relay_us']:.0f} us "
                f"| {result['memcpy_us']:.0f} us |"
            )


if __name__ == "__main__":
    main()
