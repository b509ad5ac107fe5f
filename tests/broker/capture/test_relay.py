"""The relay (`mediabroker.capture.relay`) in this process, on real /dev/shm
files: what it copies, what it refuses, and that a broken staging file only
makes its reads come back short."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

from mediabroker.capture.relay import RelayCamera, StagingFile
from mediastream.frames import SLOT_BEGIN, SLOT_END
from mediastream.generator import STAGING_SLOTS
from mediastream.ring import SHM_DIR, Ring, VideoFormat, VideoWriter
from support import unique_prefix

FMT = VideoFormat(64, 48)


class _Channel:
    """The capture process's reader channel, with only a staging file on it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def poll(self) -> None:
        pass

    def take_staging(self) -> int | None:
        fd, self._fd = self._fd, None
        return fd


@pytest.fixture
def staging() -> Iterator[Ring]:
    ring = Ring.create(unique_prefix() + "gen.x", FMT, STAGING_SLOTS, mode=0o644)
    try:
        yield ring
    finally:
        ring.close()
        Ring.unlink(ring.name)


def _fd(ring: Ring) -> int:
    return os.open(SHM_DIR / ring.name, os.O_RDONLY)


def _relay(ring: Ring, rate: float = 30.0) -> RelayCamera:
    params = {"daemon_pid": os.getppid(), "pixel_format": "bgr24", "slots": STAGING_SLOTS}
    return RelayCamera(FMT, rate, params, _Channel(_fd(ring)))  # type: ignore[arg-type]


def _write(writer: VideoWriter, value: int, timestamp_ns: int | None = None) -> None:
    writer.begin()[...] = value
    now = time.monotonic_ns()
    writer.commit(now if timestamp_ns is None else timestamp_ns, time.time_ns())


def test_an_intact_frame_is_copied_with_its_timestamp(staging: Ring) -> None:
    writer, relay = VideoWriter(staging), _relay(staging)
    try:
        stamp = time.monotonic_ns() - 50_000_000
        _write(writer, 9, stamp)
        out = np.zeros(FMT.shape, np.uint8)
        assert relay.read_into(out, 1) == stamp
        assert int(out.min()) == int(out.max()) == 9
    finally:
        relay.close()


def test_a_timestamp_from_long_ago_or_the_future_becomes_the_commit_time(staging: Ring) -> None:
    writer, relay = VideoWriter(staging), _relay(staging, rate=1000)
    out = np.zeros(FMT.shape, np.uint8)
    try:
        for lie in (time.monotonic_ns() - 10**10, time.monotonic_ns() + 10**10):
            _write(writer, 1, lie)
            before = time.monotonic_ns()
            assert before <= relay.read_into(out, 1) <= time.monotonic_ns()
    finally:
        relay.close()


def test_commits_are_paced_at_twice_the_declared_rate(staging: Ring) -> None:
    writer, relay = VideoWriter(staging), _relay(staging, rate=20)  # 25 ms apart at most
    out = np.zeros(FMT.shape, np.uint8)
    try:
        _write(writer, 1)
        relay.read_into(out, 1)
        started = time.monotonic()
        _write(writer, 2)
        relay.read_into(out, 2)
        assert time.monotonic() - started >= 0.020
    finally:
        relay.close()


def test_a_slot_the_writer_has_begun_is_never_copied(staging: Ring) -> None:
    """A writer that died mid-frame, with a lying ``newest``: frame 2's slot
    says begin 2, end 0. The relay drops it and counts it; the last intact
    frame stays what it copied."""
    writer, relay = VideoWriter(staging), _relay(staging)
    out = np.zeros(FMT.shape, np.uint8)
    try:
        _write(writer, 3)
        relay.read_into(out, 1)
        writer.begin()[...] = 200  # frame 2 begun, never committed
        staging.header["newest"] = 2
        file = relay._staging
        assert file is not None and file.slot_header(2) is not None
        assert file.slot_header(2)[SLOT_BEGIN : SLOT_END + 1] == (2, 0)  # type: ignore[index]
        assert not relay._copy(file, out)
        assert relay.dropped == 1 and int(out.max()) == 3
    finally:
        relay.close()


def test_a_truncated_file_reads_short_and_never_faults(staging: Ring) -> None:
    """The writer cuts its file to 4 KiB: the pixels read short, the file
    says it is broken, and a wait sleeps instead of spinning (no SIGBUS:
    nothing here touches the mapping past the cut)."""
    writer = VideoWriter(staging)
    _write(writer, 4)
    del writer
    rw = os.open(SHM_DIR / staging.name, os.O_RDWR)
    file = StagingFile(_fd(staging), FMT, STAGING_SLOTS)
    try:
        os.ftruncate(rw, 4096)
        assert not file.intact()
        assert not file.read_pixels(1, np.zeros(FMT.shape, np.uint8))
        started = time.monotonic()
        file.wait(1, 0.05)
        assert time.monotonic() - started >= 0.04
        os.ftruncate(rw, 0)
        assert file.newest() is None and file.slot_header(0) is None
    finally:
        file.close()
        os.close(rw)
