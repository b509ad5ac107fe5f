"""Helpers for the ring tests: bounded waits, known pixel and sample patterns,
and the child-process entry points (importable by name, as `spawn` needs)."""

from __future__ import annotations

import os
import sys
import time
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import TypeVar

import numpy as np

from mediastream.ring import AudioWriter, Ring, VideoFormat, VideoReader, VideoWriter

T = TypeVar("T")

# Exit codes the children use to say what went wrong (0 is success).
EXIT_MISMATCH = 3
EXIT_TRACKER_STARTED = 4




def pixel_base(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 pattern that differs along every axis (rows, columns, channels)."""
    index = np.indices(shape, dtype=np.int64)
    weights = (3, 5, 7)[: len(shape)]
    return (sum(w * i for w, i in zip(weights, index, strict=True)) % 256).astype(np.uint8)


def pixels_for(base: np.ndarray, seq: int) -> np.ndarray:
    """Frame ``seq``'s pixels: the base pattern shifted by seq (mod 256)."""
    return base + np.uint8(seq % 256)


def samples_for(start: int, frames: int, channels: int) -> np.ndarray:
    """Float32 samples whose value encodes their position: channel c of sample
    i is ``i + c / 4`` (exact in float32 below 2**21 samples)."""
    index = np.arange(start, start + frames, dtype=np.float64)[:, None]
    return (index + np.arange(channels)[None, :] / 4).astype(np.float32)


def tracker_started() -> bool:
    """True if this process ever started a multiprocessing resource tracker,
    the thing that unlinks shared memory it thinks this process leaked."""
    return resource_tracker._resource_tracker._pid is not None  # type: ignore[attr-defined]


def video_writer_child(name: str, count: int, paced: Connection | None) -> None:
    """Attach to ring ``name`` as its writer and write ``count`` frames.

    With ``paced``, write one frame per message received (lockstep with the
    test); without, write them back to back.
    """
    with Ring.open(name, writable=True) as ring:
        ring.set_pids(writer=os.getpid())
        writer = VideoWriter(ring)
        assert isinstance(ring.format, VideoFormat)
        base = pixel_base(ring.format.shape)
        view = None
        for _ in range(count):
            if paced is not None:
                paced.recv()
            view = writer.begin()
            np.add(base, np.uint8(writer.seq % 256), out=view)
            writer.commit(time.monotonic_ns(), time.time_ns())
        del view, writer
    if paced is not None:
        paced.close()
    if tracker_started():
        sys.exit(EXIT_TRACKER_STARTED)


def audio_writer_child(name: str, total_frames: int, block_frames: int) -> None:
    """Write ``total_frames`` positional samples (see `samples_for`) in blocks,
    back to back, stamping each block with its first sample's time on a clock
    that advances exactly with the sample rate from this process's start."""
    with Ring.open(name, writable=True) as ring:
        ring.set_pids(writer=os.getpid())
        writer = AudioWriter(ring)
        channels = ring.format.channels  # type: ignore[union-attr]
        pattern = samples_for(0, block_frames, channels)
        block = np.empty_like(pattern)
        t0_ns = time.monotonic_ns()
        position = writer.position
        while position < total_frames:
            frames = min(block_frames, total_frames - position)
            np.add(pattern[:frames], np.float32(position), out=block[:frames])
            writer.write(block[:frames], t0_ns + position * 1_000_000_000 // writer.sample_rate)
            position += frames
        del writer
    if tracker_started():
        sys.exit(EXIT_TRACKER_STARTED)


def reader_child(name: str, width: int, height: int) -> None:
    """Open ring ``name`` read-only, check its format and newest frame, exit."""
    with Ring.open(name) as ring:
        reader = VideoReader(ring)
        frame = reader.newest()
        ok = ring.format == VideoFormat(width, height) and frame is not None
        ok = ok and np.array_equal(
            frame.copy().data, pixels_for(pixel_base(frame.data.shape), frame.seq)
        )
        del frame, reader
    if tracker_started():
        sys.exit(EXIT_TRACKER_STARTED)
    if not ok:
        sys.exit(EXIT_MISMATCH)
