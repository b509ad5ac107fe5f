"""Child processes for test_integrity.py (importable by name, as ``spawn`` needs).

The writer is the daemon's own: the fake camera rendering into the next slot
through `VideoWriter`, as a capture process does, but with no pacing at all.
Each reader takes every frame `VideoReader.newest` hands out and checks it
with `verify_pattern`, the fake camera's embedded checksum.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from multiprocessing.connection import Connection

import numpy as np

from mediabroker.capture.fake import FakeCamera, pattern_seq, verify_pattern
from mediastream import FrameOverwrittenError, VideoFrame
from mediastream.ring import Ring, VideoFormat, VideoReader, VideoWriter

ENDED_CHECK_EVERY = 256  # frames between looks at the ring's state


def write_flat_out(name: str) -> None:
    """Write frames into ring ``name`` as fast as the CPU allows, until the
    ring is marked ended."""
    with Ring.open(name, writable=True) as ring:
        ring.set_pids(writer=os.getpid())
        assert isinstance(ring.format, VideoFormat)
        camera = FakeCamera(ring.format, frame_rate=0)
        writer = VideoWriter(ring)
        while not ring.ended:
            for _ in range(ENDED_CHECK_EVERY):
                view = writer.begin()
                captured_ns = camera.read_into(view, writer.seq)
                writer.commit(captured_ns, time.time_ns())
        del view, writer


def check_frames(name: str, cpu: int | None, wanted: int, limit_s: float, out: Connection) -> None:
    """Read ring ``name`` pinned to ``cpu`` until ``wanted`` frames were
    handed out (or ``limit_s`` passed), checking each with `verify_pattern`:
    every other frame in place (the zero-copy view, then `valid`), the rest
    through `copy()`. Send back what was seen, counted:

    - accepted: frames `newest()` handed out (valid when handed out)
    - intact: the view passed the checksum and was still valid after
    - overwritten: the writer reused the slot while the view was checked, and
      `valid` said so afterwards (rightly not trusted)
    - torn: the view failed the checksum but `valid` still said True
    - copies / copies_refused / copies_torn: `copy()` returned pixels that
      pass, raised FrameOverwrittenError, or returned pixels that fail
    - lapped: the writer was a whole ring ahead of a frame; still_valid: of
      those, the frames whose `valid` did not turn False
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    seen: Counter[str] = Counter()
    torn: list[int] = []
    with Ring.open(name) as ring:
        reader = VideoReader(ring)
        slots = ring.slot_count
        deadline = time.monotonic() + limit_s
        last = 0
        while seen["accepted"] < wanted and time.monotonic() < deadline:
            frame = reader.newest()
            if frame is None or frame.seq == last:
                continue
            last = frame.seq
            seen["accepted"] += 1
            outcome = _check_view(frame) if last % 2 else _check_copy(frame)
            seen[outcome] += 1
            if outcome in ("torn", "copies_torn"):
                torn.append(frame.seq)
            if reader.newest_seq >= frame.seq + slots:
                seen["lapped"] += 1
                seen["still_valid"] += frame.valid
            del frame
        del reader
    out.send((dict(seen), torn[:10]))
    out.close()


def _intact(data: np.ndarray, seq: int) -> bool:
    return verify_pattern(data) and pattern_seq(data) == seq


def _check_view(frame: VideoFrame) -> str:
    good = _intact(frame.data, frame.seq)
    if not frame.valid:  # checked after the pixels: the seqlock's order
        return "overwritten"
    return "intact" if good else "torn"


def _check_copy(frame: VideoFrame) -> str:
    try:
        copy = frame.copy()
    except FrameOverwrittenError:
        return "copies_refused"
    return "copies" if _intact(copy.data, copy.seq) else "copies_torn"
