"""Integrity under contention: torn reads, and slow readers beside fast ones.

Covered elsewhere, not repeated here: the seqlock's single-process cases
(`valid` turns False once the slot is reused, `copy()` raises on a reused or
half-rewritten slot; test_ring.py) and one reader against a free-running
writer of a test pattern (test_ring.py). Here the writer is the fake
camera's, flat out, with a reader pinned to each core checking every frame
it is handed with the camera's embedded checksum; and, through the daemon, a
reader that dawdles half a second per frame beside one that keeps up.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import pytest

from mediabroker.config import BrokerConfig
from mediastream import MediaDevices, MediaStreamTrack, VideoFrame
from mediastream.ring import Ring, VideoFormat
from support import ClientProcess, Daemon, add_figure, integrity_children, unique_prefix, wait_until

SPAWN = multiprocessing.get_context("spawn")
STRESS_FORMAT = VideoFormat(64, 48)  # small frames: the writer laps the readers often
DEFAULT_SLOTS = BrokerConfig().ring_slots  # 8
FEW_SLOTS = 3  # the writer laps a reader while it checks a frame more often
FRAMES_PER_READER = 60_000
STRESS_LIMIT_S = 60.0  # per reader, for a loaded machine: about 5 s suffice on a quiet one
MIN_FRAMES_CHECKED = 100_000


@pytest.fixture(params=[DEFAULT_SLOTS, FEW_SLOTS], ids=lambda slots: f"{slots}-slots")
def stress_ring(request: pytest.FixtureRequest) -> Iterator[Ring]:
    """A ring as the daemon makes one, unlinked at the end (the daemon's part)."""
    ring = Ring.create(unique_prefix() + "stress", STRESS_FORMAT, request.param)
    try:
        yield ring
    finally:
        ring.close()
        Ring.unlink(ring.name)


def reap(process: BaseProcess) -> int | None:
    """Join ``process`` (kill it after 30 s) and free its handles; its exit code."""
    process.join(30)
    if process.exitcode is None:
        process.kill()
        process.join(5)
    code = process.exitcode
    process.close()
    return code


def newest(ring: Ring) -> int:
    return int(ring.header["newest"])


def reader_cpus() -> list[int | None]:
    """One reader per core this process may use (two on the 2-core target);
    unpinned when there is only one."""
    cpus = sorted(os.sched_getaffinity(0))
    return list(cpus[:2]) if len(cpus) >= 2 else [None, None]


def test_no_torn_frame_is_handed_out_as_valid(stress_ring: Ring) -> None:
    """1. A spawned process writes fake-camera frames into a ring of the
       default 8 slots, or of 3 (the writer laps a reader mid-check more
       often), as fast as it can (64x48: a few microseconds a frame).
    2. A reader process pinned to each core takes every frame the ring hands
       out and checks it with `verify_pattern` (the embedded checksum): every
       other frame in place, then `valid`; the others through `copy()`.
    3. Over at least 100,000 frames: no frame fails the checksum while still
       `valid`; every frame the writer has lapped says `valid` False; no copy
       fails the checksum (an overwritten one raises instead). With 3 slots
       the race must have been real: views overwritten mid-check, copies
       refused."""
    writer = SPAWN.Process(
        target=integrity_children.write_flat_out, args=(stress_ring.name,), name="writer"
    )
    readers = []
    writer.start()
    try:
        wait_until(lambda: newest(stress_ring) > 0 or not writer.is_alive(), 30, "a first frame")
        for cpu in reader_cpus():
            mine, theirs = SPAWN.Pipe(duplex=False)
            args = (stress_ring.name, cpu, FRAMES_PER_READER, STRESS_LIMIT_S, theirs)
            process = SPAWN.Process(target=integrity_children.check_frames, args=args)
            process.start()
            theirs.close()
            readers.append((process, mine))
        results = []
        for process, mine in readers:
            assert mine.poll(STRESS_LIMIT_S + 30), f"reader {process.pid} sent nothing"
            results.append(mine.recv())
        written = newest(stress_ring)
    finally:
        stress_ring.mark_ended()  # the writer's signal to stop
        codes = [reap(process) for process, _ in readers] + [reap(writer)]
        for _, mine in readers:
            mine.close()
    assert codes == [0] * len(codes), f"exit codes {codes} (readers, then the writer)"
    seen: Counter[str] = Counter()
    for counts, torn in results:
        assert not torn, f"torn frames handed out as valid: {torn}"
        seen.update(counts)
    add_figure("torn-read stress: frames checked", seen["accepted"])
    add_figure("torn-read stress: views overwritten mid-check (valid False)", seen["overwritten"])
    add_figure("torn-read stress: copies made", seen["copies"])
    add_figure("torn-read stress: copies refused (FrameOverwrittenError)", seen["copies_refused"])
    summary = f"{dict(seen)} of {written} written"
    assert seen["accepted"] >= MIN_FRAMES_CHECKED, summary
    assert seen["torn"] == 0 and seen["copies_torn"] == 0, summary
    outcomes = ("intact", "overwritten", "copies", "copies_refused")
    assert sum(seen[o] for o in outcomes) == seen["accepted"], summary
    assert seen["lapped"] > 0 and seen["still_valid"] == 0, summary
    assert seen["intact"] > 0 and seen["copies"] > 0, summary
    if stress_ring.slot_count < DEFAULT_SLOTS:  # the race must have happened, or this proves little
        assert seen["overwritten"] > 0 and seen["copies_refused"] > 0, f"no race: {summary}"


# -- slow readers ------------------------------------------------------------------

MEASURE_S = 2.5  # each window of the fast reader's rate
SAME_RATE = 0.05  # the slow reader may change the fast one's rate by this much at most
SIZE = (320, 240)


@dataclass(frozen=True)
class Delivery:
    """What a reader got over a window: frames per second of capture time,
    and the share of the frames written then that it got."""

    rate: float
    share: float

    def __str__(self) -> str:
        return f"{self.rate:.2f} fps ({self.share:.1%} of the frames written)"


def delivered(track: MediaStreamTrack, seconds: float) -> Delivery:
    """Read ``track`` flat out for ``seconds`` of capture time."""
    first = track.read(timeout=5)
    count, last = 1, first
    while last.timestamp - first.timestamp < seconds:
        last = track.read(timeout=5)
        count += 1
    return Delivery(
        (count - 1) / (last.timestamp - first.timestamp), count / (last.seq - first.seq + 1)
    )


def test_a_slow_reader_does_not_slow_a_fast_one(daemon: Daemon) -> None:
    """1. This process reads the camera as fast as it comes: its delivered
       rate over 2.5 s alone.
    2. A client process reads the same camera, sleeping 0.5 s per frame; this
       process's delivered rate over 2.5 s beside it is within 5 % of alone.
    3. The slow reader's stats count every frame it skipped
       (discarded = frames written over its reads - delivered). Nothing
       queues for it anywhere: it waits on the ring's doorbell, and the
       capture process writes the ring whoever reads."""
    with MediaDevices(daemon.run_dir, name="fast reader") as devices:
        track = devices.getUserMedia({"video": {"width": SIZE[0], "height": SIZE[1]}}).getTracks()[
            0
        ]
        alone = delivered(track, MEASURE_S)

        slow = ClientProcess("slow", daemon.run_dir, *SIZE, 8)
        try:
            first = slow.next()
            beside = delivered(track, MEASURE_S)
            lines = [first] + [slow.next() for _ in range(7)]
            assert slow.wait() == 0
        finally:
            slow.close()
        frame = track.read(timeout=5)
        assert isinstance(frame, VideoFrame)
        track.stop()

    add_figure(
        "slow reader: fast reader's rate beside it / alone", round(beside.rate / alone.rate, 3)
    )
    assert abs(beside.rate / alone.rate - 1) <= SAME_RATE, f"alone {alone}, beside {beside}"
    stats = lines[-1]["stats"]
    assert isinstance(stats, dict)
    span = int(lines[-1]["seq"]) - int(lines[0]["seq"]) + 1  # type: ignore[call-overload]
    assert stats["deliveredFrames"] == len(lines)
    assert stats["discardedFrames"] == span - len(lines) > 10 * (len(lines) - 1), lines
    assert stats["totalFrames"] == span
