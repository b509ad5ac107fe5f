"""The held-frame race, for tests/client/test_holds.py and its aarch64 run
(aarch64_stress.py): a writer in a process of its own honours one hold
table, as fast as it can, each frame filled with one value and stamped with
its seq, while a reader holds and releases frames near the writer's next
claim and checks that none it held ever changed."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

import numpy as np

from mediastream.frames import VideoFrame
from mediastream.holds import HeldSeqs, HoldTable
from mediastream.ring import Ring, VideoReader, VideoWriter


def fill(view: np.ndarray, seq: int) -> None:
    view.fill(seq % 251)
    view.reshape(-1)[:8] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)


def intact(data: np.ndarray, seq: int) -> bool:
    """Whether ``data`` is still frame ``seq`` as `fill` made it."""
    flat = data.reshape(-1)
    if int.from_bytes(flat[:8].tobytes(), "little") != seq:
        return False
    return bool(np.all(flat[8:] == seq % 251))


def writer_child(ring_name: str, table_path: str, limit: int, seconds: float) -> None:
    holds = HeldSeqs()
    holds.add("reader", os.open(table_path, os.O_RDONLY), limit)
    with Ring.open(ring_name, writable=True) as ring:
        writer = VideoWriter(ring, holds)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            view = writer.begin()
            fill(view, writer.seq)
            writer.commit(time.monotonic_ns(), time.time_ns())
        ring.mark_ended()
        del writer
    holds.close()


@dataclass
class RaceCounts:
    checked: int = 0  # held frames verified intact and valid after a while
    refused: int = 0  # holds the writer won (its claim came first)
    changed: list[int] = field(default_factory=list)  # seqs of held frames that changed


def hold_while_racing(ring: Ring, reader: VideoReader, table: HoldTable) -> RaceCounts:
    """Hold two frames at a time until the ring ends; check each before
    releasing it. Older frames are nearer the writer's next claim (the
    oldest is it): every distance from the race is tried in turn."""
    counts, pending = RaceCounts(), []
    for attempt in itertools.count():
        if ring.ended:
            break
        frame = reader.frame(max(1, reader.newest_seq - attempt % ring.slot_count))
        held = table.hold(frame) if frame is not None else None
        if frame is not None and held is None:
            counts.refused += 1
        if held is not None:
            pending.append(held)
        if len(pending) == 2:
            _check(pending, counts)
            pending = []
    for old in pending:
        old.release()
    return counts


def _check(frames: list[VideoFrame], counts: RaceCounts) -> None:
    for old in frames:
        if intact(old.data, old.seq) and old.valid:
            counts.checked += 1
        else:
            counts.changed.append(old.seq)
        old.release()
