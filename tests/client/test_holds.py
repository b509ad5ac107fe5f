"""Held frames at the ring level: a writer and a reader's hold table, with
no daemon (tests/system/test_held_frames.py has the whole path)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mediastream.errors import HoldLimitError
from mediastream.holds import HOLD_TABLE_BYTES, HeldSeqs, HoldTable
from mediastream.ring import SHM_DIR, Ring, VideoFormat, VideoReader, VideoWriter
from support.hold_children import fill, hold_while_racing, intact, writer_child

FORMAT = VideoFormat(64, 48, "gray8")
PREFIX = f"mbtest-holds-{os.getpid()}-"


class Segments:
    """Rings of this test, closed and unlinked at the end."""

    def __init__(self) -> None:
        self.rings: list[Ring] = []
        self.count = 0

    def create(self, fmt: VideoFormat, slots: int) -> Ring:
        self.count += 1
        ring = Ring.create(f"{PREFIX}{self.count}", fmt, slots)
        self.rings.append(ring)
        return ring

    def open(self, name: str) -> Ring:
        ring = Ring.open(name)
        self.rings.append(ring)
        return ring


@pytest.fixture
def segments() -> Iterator[Segments]:
    made = Segments()
    yield made
    for ring in reversed(made.rings):
        ring.close()
    for index in range(1, made.count + 1):
        Ring.unlink(f"{PREFIX}{index}")
    left = sorted(path.name for path in SHM_DIR.glob(PREFIX + "*"))
    assert not left, f"left in {SHM_DIR}: {left}"


class Rig:
    """A ring, its writer honouring one reader's table, and that reader."""

    def __init__(self, segments: Segments, slots: int = 8, limit: int = 2) -> None:
        self.ring = segments.create(FORMAT, slots=slots)
        self.table = HoldTable.create(self.ring.name, SHM_DIR)
        self.table.limit = limit
        self.held = HeldSeqs()
        self.held.add("reader", os.open(self.table.path, os.O_RDONLY), limit)
        self.writer = VideoWriter(self.ring, self.held)
        self.reader = VideoReader(segments.open(self.ring.name))

    def write(self, count: int) -> None:
        for _ in range(count):
            fill(self.writer.begin(), self.writer.seq)
            self.writer.commit(time.monotonic_ns(), time.time_ns())

    def close(self) -> None:
        self.held.close()
        self.table.close()
        del self.writer, self.reader  # their views pin the mappings


@pytest.fixture
def rig(segments: Segments) -> Iterator[Rig]:
    made = Rig(segments)
    yield made
    made.close()


def test_a_held_frame_outlives_many_laps_and_is_reused_once_released(rig: Rig) -> None:
    """1. A held frame stays intact and valid while the writer laps the ring
    ten times. 2. Frames nobody holds still go round. 3. Released, its slot
    is reused within one lap."""
    rig.write(3)
    frame = rig.reader.newest()
    assert frame is not None and frame.seq == 3
    held = rig.table.hold(frame)
    assert held is not None and held.held
    rig.write(80)
    assert held.valid and intact(held.data, 3)
    newest = rig.reader.newest()
    assert newest is not None and newest.seq == 83 and intact(newest.data, 83)
    held.release()
    assert not held.held
    rig.write(8)
    assert not held.valid


def test_with_releases_and_the_limit_is_the_tables(rig: Rig) -> None:
    """``with`` releases; holding past the limit raises `HoldLimitError`."""
    rig.write(1)
    first = rig.table.hold(rig.reader.newest())  # type: ignore[arg-type]
    rig.write(1)
    second = rig.table.hold(rig.reader.newest())  # type: ignore[arg-type]
    assert first is not None and second is not None
    with pytest.raises(HoldLimitError, match="holds 2 frames"):
        rig.table.check_room("t1")
    with second:
        pass
    assert not second.held and rig.table.held == 1
    rig.table.check_room("t1")
    first.release()
    first.release()  # idempotent
    assert rig.table.held == 0


def test_the_writer_honours_only_the_granted_entries(rig: Rig) -> None:
    """A reader that writes seqs past its granted entries holds nothing more."""
    rig.write(8)
    entries = np.ndarray((8,), "<u8", buffer=rig.table._mapping)  # type: ignore[arg-type]
    entries[:] = np.arange(1, 9)  # all eight frames, granted two
    rig.write(16)
    intact_seqs = [seq for seq in range(1, 9) if rig.reader.frame(seq) is not None]
    assert intact_seqs == [1, 2]


def test_a_hold_lost_to_the_writer_is_refused(rig: Rig) -> None:
    """A frame whose slot the writer claimed is not held (H2 sees the new begin)."""
    rig.write(1)
    frame = rig.reader.newest()
    assert frame is not None
    for _ in range(7):  # the next 7 claims pass over slot... until it is claimed again
        rig.write(1)
    rig.writer.begin()  # claims frame 1's slot, not yet committed
    assert rig.table.hold(frame) is None
    assert rig.table.held == 0


def test_every_slot_held_still_writes(segments: Segments) -> None:
    """More holds than slots (a hostile table): the writer never waits."""
    rig = Rig(segments, slots=2, limit=8)
    try:
        rig.write(1)
        rig.table.limit = 8
        a = rig.table.hold(rig.reader.newest())  # type: ignore[arg-type]
        rig.write(1)
        b = rig.table.hold(rig.reader.newest())  # type: ignore[arg-type]
        assert a is not None and b is not None
        rig.write(5)
        assert rig.reader.newest_seq == 7
    finally:
        rig.close()


def test_a_truncated_table_holds_nothing_and_breaks_nothing(rig: Rig) -> None:
    """The owner truncates its table under the writer: no SIGBUS, no holds."""
    rig.write(1)
    held = rig.table.hold(rig.reader.newest())  # type: ignore[arg-type]
    assert held is not None
    os.truncate(rig.table.path, 0)
    assert rig.held.held() == set()
    rig.write(16)
    assert rig.reader.newest_seq == 17
    os.truncate(rig.table.path, HOLD_TABLE_BYTES)  # for the reader's own mapping


def test_held_frames_survive_a_writer_racing_at_full_speed(segments: Segments) -> None:
    """The race the store-load fences settle: a writer in another process
    claims slots as fast as it can while the reader holds the oldest frame
    (the next one the writer claims) and releases. No frame the table
    reports held ever changes under the reader."""
    ring = segments.create(FORMAT, slots=5)
    table = HoldTable.create(ring.name, SHM_DIR)
    table.limit = 2
    reader = VideoReader(segments.open(ring.name))
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=writer_child, args=(ring.name, str(table.path), 2, 3.0))
    child.start()
    try:
        counts = hold_while_racing(ring, reader, table)
    finally:
        child.join(30)
        table.close()
    assert child.exitcode == 0
    assert not counts.changed, f"held frames changed: {counts.changed[:10]}"
    assert counts.checked > 200, counts


def test_a_table_is_the_readers_own_file(tmp_path: Path) -> None:
    """The file is created 0644 (the writer reads, only we write) and its
    name carries the ring's; close removes it."""
    table = HoldTable.create("mbtest-ring.1", tmp_path)
    info = table.path.stat()
    assert info.st_mode & 0o777 == 0o644 and info.st_size == HOLD_TABLE_BYTES
    assert table.name.startswith("mbtest-ring.1.hold.")
    table.close()
    assert not table.path.exists()
    table.close()
