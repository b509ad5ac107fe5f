"""mediastream.ring: the shared-memory layout both sides of the broker agree on.

Real segments in /dev/shm, real child processes (``spawn``). Every segment a
test makes goes through the `segments` fixture, which closes the rings,
unlinks the names the way the daemon does, and fails the test if anything of
this run is left in /dev/shm or a child process is still running.
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import re
import stat
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any
from uuid import uuid4

import numpy as np
import pytest

from mediastream.errors import FrameOverwrittenError, MediaStreamError, NotReadableError
from mediastream.ring import (
    LAYOUT_VERSION,
    SHM_DIR,
    AudioFormat,
    AudioReader,
    AudioWriter,
    Ring,
    RingFormat,
    VideoFormat,
    VideoReader,
    VideoWriter,
    check_segment_name,
    free_shm_bytes,
    read_ring_pids,
    ring_bytes,
)
from support import ring_children, wait_until
from support.ring_children import pixel_base, pixels_for, samples_for

NS_PER_S = 1_000_000_000
MIB = 1024 * 1024
PREFIX = f"mbtest-{os.getpid()}-"
SPAWN = multiprocessing.get_context("spawn")
CHILD_TIMEOUT_S = 60.0


class Segments:
    """Unique segment names, and the daemon's part: close and unlink at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.rings: list[Ring] = []

    def name(self, suffix: str = "x") -> str:
        name = f"{PREFIX}{uuid4().hex[:8]}.{suffix}"
        self.names.append(name)
        return name

    def create(self, fmt: RingFormat, slots: int = 4, **kwargs: Any) -> Ring:
        ring = Ring.create(self.name(), fmt, slots, **kwargs)
        self.rings.append(ring)
        return ring

    def open(self, name: str, *, writable: bool = False) -> Ring:
        ring = Ring.open(name, writable=writable)
        self.rings.append(ring)
        return ring

    def release(self) -> None:
        for ring in reversed(self.rings):
            ring.close()
        for name in self.names:
            Ring.unlink(name)


def _ours() -> set[str]:
    return {path.name for path in SHM_DIR.glob(f"{PREFIX}*")}


@pytest.fixture
def segments() -> Iterator[Segments]:
    before = _ours()
    segs = Segments()
    yield segs
    children = multiprocessing.active_children()
    for child in children:
        _reap(child, timeout_s=0)
    segs.release()
    left = sorted(_ours() - before)
    for name in left:
        Ring.unlink(name)
    assert not children, f"child processes still running after the test: {children}"
    assert not left, f"segments left in {SHM_DIR}: {left}"


def _reap(proc: BaseProcess, timeout_s: float = CHILD_TIMEOUT_S) -> int | None:
    """Join ``proc`` within the timeout, else kill it; return its exit code."""
    proc.join(timeout_s)
    if proc.is_alive():
        proc.kill()
        proc.join(10)
    code = proc.exitcode
    proc.close()
    return code


def _mappings(name: str) -> int:
    """How many distinct mappings of segment ``name`` this process has."""
    with open("/proc/self/maps") as maps:
        return len({line.split()[0] for line in maps if line.rstrip().endswith(f"/{name}")})


def _mapped(name: str) -> bool:
    return _mappings(name) > 0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _write_frame(writer: VideoWriter, base: np.ndarray, monotonic_ns: int | None = None) -> int:
    view = writer.begin()
    np.add(base, np.uint8(writer.seq % 256), out=view)
    return writer.commit(monotonic_ns or time.monotonic_ns(), time.time_ns())


def _stride(fmt: VideoFormat) -> int:
    return -(-(64 + fmt.frame_bytes) // 64) * 64


def _base_chain(array: np.ndarray) -> list[object]:
    """What ``array`` borrows its memory from, nearest first, down to the buffer."""
    chain: list[object] = []
    base: object = array.base
    while base is not None:
        chain.append(base)
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return chain


def _owned(array: np.ndarray) -> bool:
    """Private writable memory: no buffer (a mapping) anywhere below it."""
    borrowed = any(isinstance(base, (memoryview, mmap.mmap)) for base in _base_chain(array))
    return array.flags.writeable and not borrowed


# --- formats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        (VideoFormat(640, 480), (480, 640, 3)),
        (VideoFormat(640, 480, "rgb24"), (480, 640, 3)),
        (VideoFormat(33, 7, "gray8"), (7, 33)),
    ],
)
def test_video_format_shape(fmt: VideoFormat, shape: tuple[int, ...]) -> None:
    assert fmt.shape == shape
    assert fmt.frame_bytes == int(np.prod(shape))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((640, 480, "yuv420"), "pixel format"),
        ((0, 480), "out of range"),
        ((640, 16385), "out of range"),
    ],
)
def test_video_format_rejects_bad_values(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VideoFormat(*args)


@pytest.mark.parametrize("args", [(0, 2), (48000, 0), (768_001, 1), (48000, 65)])
def test_audio_format_rejects_bad_values(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        AudioFormat(*args)


# --- video: one process ------------------------------------------------------


def test_video_header_round_trip(segments: Segments) -> None:
    fmt = VideoFormat(64, 48, "rgb24")
    ring = segments.create(fmt, slots=5)
    reader_ring = segments.open(ring.name)

    assert (ring.writable, reader_ring.writable) == (True, False)
    assert reader_ring.format == fmt
    assert reader_ring.slot_count == 5
    assert reader_ring.kind == "video"
    assert not reader_ring.ended
    assert re.fullmatch(
        rf"<Ring '{re.escape(ring.name)}' video 64x48 rgb24 slots=5 newest=0 live>",
        repr(reader_ring),
    )

    ring.mark_ended()
    assert reader_ring.ended
    assert repr(reader_ring).endswith(" ended>")


def test_read_only_ring_refuses_writes(segments: Segments) -> None:
    ring = segments.create(VideoFormat(8, 8), slots=2)
    reader_ring = segments.open(ring.name)
    with pytest.raises(ValueError, match="not a writable video ring"):
        VideoWriter(reader_ring)
    with pytest.raises(ValueError, match="read-only"):
        reader_ring.mark_ended()
    assert not ring.ended


def test_newest_is_none_before_the_first_frame(segments: Segments) -> None:
    ring = segments.create(VideoFormat(16, 16), slots=3)
    reader = VideoReader(segments.open(ring.name))
    assert reader.newest_seq == 0
    assert reader.newest() is None
    assert reader.frame(0) is None
    assert reader.frame(1) is None


def test_committed_frame_is_a_zero_copy_view(segments: Segments) -> None:
    """1. the writer fills slot 1 in place and commits it with two timestamps;
    2. a reader on a read-only mapping gets that frame as a view into the
       mapping, not a copy, with the writer's pixels, seq and timestamps."""
    fmt = VideoFormat(32, 24)
    ring = segments.create(fmt, slots=4)
    writer = VideoWriter(ring)
    reader_ring = segments.open(ring.name)
    reader = VideoReader(reader_ring)
    base = pixel_base(fmt.shape)

    view = writer.begin()
    assert view.shape == fmt.shape and view.flags.writeable
    np.add(base, np.uint8(1), out=view)
    monotonic_ns, wall_ns = time.monotonic_ns(), time.time_ns()
    assert writer.commit(monotonic_ns, wall_ns) == 1

    assert reader.newest_seq == 1
    frame = reader.newest()
    assert frame is not None
    assert (frame.seq, frame.format) == (1, "bgr24")
    assert frame.data.shape == fmt.shape and frame.data.dtype == np.uint8
    assert not frame.data.flags.owndata
    assert not frame.data.flags.writeable
    region = np.frombuffer(reader_ring.buffer, np.uint8)
    assert np.shares_memory(frame.data, region)
    del region
    assert any(base_ is reader_ring.buffer for base_ in _base_chain(frame.data))
    assert frame.data.ctypes.data % 64 == 0, "slot data must be 64-byte aligned"
    assert np.array_equal(frame.data, pixels_for(base, 1))
    assert frame.timestamp == pytest.approx(monotonic_ns / NS_PER_S, abs=1e-9)
    assert frame.wall_time == pytest.approx(wall_ns / NS_PER_S, abs=1e-6)
    assert frame.valid
    assert reader.frame(1) is not None


def test_frame_view_is_read_only_even_on_a_writable_mapping(segments: Segments) -> None:
    """The daemon may read its own rings; a frame's data is still read-only."""
    fmt = VideoFormat(8, 4)
    ring = segments.create(fmt, slots=2)
    _write_frame(VideoWriter(ring), pixel_base(fmt.shape))
    frame = VideoReader(ring).newest()
    assert frame is not None
    assert not frame.data.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        frame.data[0, 0, 0] = 0


def test_valid_turns_false_once_the_writer_reuses_the_slot(segments: Segments) -> None:
    """1. read frame 1; 2. the writer commits slot_count - 1 more frames: frame 1
    is still intact; 3. the writer claims the next slot (frame 1's): frame 1 is
    invalid before a single pixel is written, and stays so after the commit."""
    fmt, slots = VideoFormat(16, 8), 4
    ring = segments.create(fmt, slots=slots)
    writer = VideoWriter(ring)
    reader = VideoReader(segments.open(ring.name))
    base = pixel_base(fmt.shape)
    _write_frame(writer, base)
    frame = reader.newest()
    assert frame is not None and frame.seq == 1

    for _ in range(slots - 1):
        _write_frame(writer, base)
    assert frame.valid
    assert np.array_equal(frame.data, pixels_for(base, 1))
    assert reader.frame(1) is not None

    writer.begin()
    assert not frame.valid
    assert reader.frame(1) is None
    writer.commit(time.monotonic_ns(), time.time_ns())
    assert not frame.valid
    assert reader.frame(1) is None
    newest = reader.newest()
    assert newest is not None and newest.seq == slots + 1


def test_copy_is_an_owned_writable_verified_copy(segments: Segments) -> None:
    fmt = VideoFormat(16, 8)
    ring = segments.create(fmt, slots=3)
    writer = VideoWriter(ring)
    reader_ring = segments.open(ring.name)
    base = pixel_base(fmt.shape)
    _write_frame(writer, base, monotonic_ns=123_456_789_000)
    frame = VideoReader(reader_ring).newest()
    assert frame is not None

    copy = frame.copy()
    assert copy.data.flags.owndata and _owned(copy.data)
    region = np.frombuffer(reader_ring.buffer, np.uint8)
    assert not np.shares_memory(copy.data, region)
    del region
    assert np.array_equal(copy.data, pixels_for(base, 1))
    assert (copy.seq, copy.timestamp, copy.wall_time, copy.format) == (
        frame.seq,
        frame.timestamp,
        frame.wall_time,
        frame.format,
    )
    assert copy.slot_header is None and copy.valid
    copy.data[...] = 0
    assert np.array_equal(frame.data, pixels_for(base, 1))
    # An owned frame stays valid whatever the writer does.
    for _ in range(3):
        _write_frame(writer, base)
    assert copy.valid and copy.copy().seq == 1


@pytest.mark.parametrize("commit_last", [True, False], ids=["reused", "being-rewritten"])
def test_copy_raises_once_the_slot_is_reused(segments: Segments, commit_last: bool) -> None:
    """1. read frame 1; 2. the writer commits slot_count - 1 frames, then claims
    frame 1's slot (and, when ``commit_last``, commits it); 3. copy() refuses."""
    fmt, slots = VideoFormat(16, 8), 3
    ring = segments.create(fmt, slots=slots)
    writer = VideoWriter(ring)
    reader = VideoReader(segments.open(ring.name))
    base = pixel_base(fmt.shape)
    _write_frame(writer, base)
    frame = reader.newest()
    assert frame is not None
    for _ in range(slots - 1):
        _write_frame(writer, base)
    frame.copy()  # still intact here

    if commit_last:
        _write_frame(writer, base)
    else:
        writer.begin()
    with pytest.raises(FrameOverwrittenError, match="frame 1 was overwritten") as excinfo:
        frame.copy()
    assert isinstance(excinfo.value, MediaStreamError)


def test_reattached_writer_continues_the_sequence(segments: Segments) -> None:
    """A capture process restarted by the supervisor resumes after the last seq."""
    fmt = VideoFormat(16, 8)
    ring = segments.create(fmt, slots=3)
    base = pixel_base(fmt.shape)
    first = VideoWriter(ring)
    for _ in range(5):
        _write_frame(first, base)

    second = VideoWriter(segments.open(ring.name, writable=True))
    assert second.seq == 5
    assert _write_frame(second, base) == 6

    reader = VideoReader(segments.open(ring.name))
    newest = reader.newest()
    assert newest is not None and newest.seq == 6
    assert np.array_equal(newest.data, pixels_for(base, 6))
    for seq in (4, 5):  # the slots the restarted writer has not reached yet
        frame = reader.frame(seq)
        assert frame is not None and np.array_equal(frame.data, pixels_for(base, seq))
    assert reader.frame(3) is None


def test_gray8_frames_are_two_dimensional(segments: Segments) -> None:
    fmt = VideoFormat(20, 10, "gray8")
    ring = segments.create(fmt, slots=2)
    base = pixel_base(fmt.shape)
    _write_frame(VideoWriter(ring), base)
    frame = VideoReader(segments.open(ring.name)).newest()
    assert frame is not None
    assert frame.data.shape == (10, 20)
    assert frame.format == "gray8"
    assert np.array_equal(frame.data, pixels_for(base, 1))
    assert frame.copy().data.shape == (10, 20)


# --- segments: creation, permissions, failures -------------------------------


@pytest.mark.parametrize("mode", [None, 0o660])
def test_segment_mode_ignores_the_umask(segments: Segments, mode: int | None) -> None:
    old = os.umask(0o077)
    try:
        kwargs = {} if mode is None else {"mode": mode}
        ring = segments.create(VideoFormat(8, 8), slots=2, **kwargs)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(SHM_DIR / ring.name).st_mode) == (mode or 0o640)


def test_segment_is_preallocated(segments: Segments) -> None:
    fmt, slots = VideoFormat(640, 480), 4
    ring = segments.create(fmt, slots=slots)
    st = os.stat(SHM_DIR / ring.name)
    assert int(ring.header["slot_stride"]) == _stride(fmt)
    assert st.st_size == 256 + slots * _stride(fmt)
    assert st.st_blocks * 512 >= st.st_size, (
        f"only {st.st_blocks * 512} of {st.st_size} bytes allocated"
    )


@pytest.mark.parametrize(
    ("fmt", "slots"),
    [
        (VideoFormat(640, 480), 4),
        (VideoFormat(7, 3, "gray8"), 2),  # a slot that needs padding to 64 bytes
        (VideoFormat(1920, 1080, "rgb24"), 8),
        (AudioFormat(48000, 2), 48000),
        (AudioFormat(44100, 1), 1001),  # PCM that needs padding to 64 bytes
    ],
    ids=repr,
)
def test_ring_bytes_is_what_create_allocates(
    segments: Segments, fmt: RingFormat, slots: int
) -> None:
    """The daemon's budget counts with `ring_bytes`: it must be the segment's size."""
    ring = segments.create(fmt, slots=slots)
    assert os.stat(SHM_DIR / ring.name).st_size == ring_bytes(fmt, slots)
    assert len(ring.buffer) == ring_bytes(fmt, slots)


def test_create_refuses_when_shm_has_no_room(segments: Segments) -> None:
    fmt = VideoFormat(16384, 16384)
    free = free_shm_bytes()
    slots = free // _stride(fmt) + 2
    needed = 256 + slots * _stride(fmt)
    name = segments.name()

    with pytest.raises(NotReadableError) as excinfo:
        Ring.create(name, fmt, slots)

    message = str(excinfo.value)
    match = re.search(r"has ([\d.]+) MiB free, the ring '([^']+)' needs ([\d.]+) MiB", message)
    assert match, message
    assert float(match[1]) == pytest.approx(free / MIB, abs=64)
    assert match[2] == name
    assert float(match[3]) == pytest.approx(needed / MIB, abs=0.1)
    assert not (SHM_DIR / name).exists()


def test_create_refuses_an_existing_name_and_leaves_it_alone(segments: Segments) -> None:
    fmt = VideoFormat(8, 8)
    ring = segments.create(fmt, slots=2)
    _write_frame(VideoWriter(ring), pixel_base(fmt.shape))
    with pytest.raises(FileExistsError):
        Ring.create(ring.name, fmt, 2)
    frame = VideoReader(segments.open(ring.name)).newest()
    assert frame is not None and frame.seq == 1


@pytest.mark.parametrize(
    "name", ["", "a/b", "..", "../etc", "/abs", ".hidden", "-x", "a b", "ü", "x" * 201]
)
def test_invalid_segment_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid shared-memory segment name"):
        check_segment_name(name)
    with pytest.raises(ValueError):
        Ring.create(name, VideoFormat(8, 8), 2)
    with pytest.raises(ValueError):
        Ring.open(name)
    with pytest.raises(ValueError):
        Ring.unlink(name)


def test_open_missing_segment_raises_not_readable(segments: Segments) -> None:
    name = segments.name()
    with pytest.raises(NotReadableError, match=re.escape(repr(name))):
        Ring.open(name)


@pytest.mark.parametrize("content", ["random", "short", "empty"])
def test_open_non_ring_segment_raises_and_unmaps(segments: Segments, content: str) -> None:
    name = segments.name()
    data = {"random": os.urandom(64 * 1024), "short": b"MBRKRING", "empty": b""}[content]
    (SHM_DIR / name).write_bytes(data)
    fds = _open_fds()

    with pytest.raises(NotReadableError, match=re.escape(repr(name))):
        Ring.open(name)
    assert not _mapped(name)
    assert _open_fds() == fds
    assert read_ring_pids(name) is None


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("magic", 0, f"is not a version {LAYOUT_VERSION} ring"),
        ("version", LAYOUT_VERSION + 1, f"is not a version {LAYOUT_VERSION} ring"),
        ("kind", 9, "invalid format: unknown kind 9"),
        ("width", 0, "invalid format"),
        ("pixel_format", b"yuv420", "invalid format"),
        ("slot_count", 1_000_000, "inconsistent header"),
        ("slot_count", 0, "inconsistent header"),
        ("slot_stride", 64, "inconsistent header"),
    ],
)
def test_open_corrupt_header_raises_and_unmaps(
    segments: Segments, field: str, value: object, match: str
) -> None:
    ring = segments.create(VideoFormat(16, 8), slots=2)
    ring.header[field] = value
    with pytest.raises(NotReadableError, match=match):
        Ring.open(ring.name)
    ring.close()
    assert not _mapped(ring.name)


def test_close_is_idempotent(segments: Segments) -> None:
    ring = segments.create(VideoFormat(8, 8), slots=2)
    reader_ring = Ring.open(ring.name)
    reader_ring.close()
    reader_ring.close()
    assert reader_ring.closed
    assert repr(reader_ring) == f"<Ring {ring.name!r} closed>"
    with pytest.raises(ValueError, match="closed"):
        _ = reader_ring.buffer
    with Ring.open(ring.name) as scoped:
        assert not scoped.closed
    assert scoped.closed
    scoped.close()
    assert _mappings(ring.name) == 1  # the creator's
    ring.close()
    assert not _mapped(ring.name)


def test_frames_keep_the_mapping_alive_after_close(segments: Segments) -> None:
    fmt = VideoFormat(16, 8)
    ring = segments.create(fmt, slots=2)
    base = pixel_base(fmt.shape)
    _write_frame(VideoWriter(ring), base)
    reader_ring = Ring.open(ring.name)
    reader = VideoReader(reader_ring)
    frame = reader.newest()
    reader_ring.close()  # must not fail, nor pull the pages from under the frame
    assert reader_ring.closed
    assert frame is not None and np.array_equal(frame.data, pixels_for(base, 1))
    del frame, reader
    gc.collect()
    ring.close()
    assert not _mapped(ring.name)


def test_unclosed_ring_warns(segments: Segments) -> None:
    ring = Ring.create(segments.name(), VideoFormat(8, 8), 2)
    name = ring.name
    with pytest.warns(ResourceWarning, match=f"unclosed <Ring {re.escape(repr(name))}"):
        del ring
        gc.collect()
    assert not _mapped(name)


def test_read_ring_pids(segments: Segments) -> None:
    ring = segments.create(AudioFormat(48000, 1), slots=480)
    assert read_ring_pids(ring.name) == (os.getpid(), 0)
    ring.set_pids(writer=4242)
    assert read_ring_pids(ring.name) == (os.getpid(), 4242)
    ring.set_pids(owner=1)
    assert read_ring_pids(ring.name) == (1, 4242)

    junk = segments.name()
    (SHM_DIR / junk).write_bytes(os.urandom(4096))
    assert read_ring_pids(junk) is None
    assert read_ring_pids(segments.name()) is None  # missing
    assert read_ring_pids("../etc/passwd") is None


# --- across processes --------------------------------------------------------


def test_writer_in_a_spawned_child_lockstep(segments: Segments) -> None:
    """1. a spawned child attaches as the writer; 2. for each of N frames the
    test asks for one and waits until the ring shows it; 3. every frame has the
    child's pattern and a CLOCK_MONOTONIC timestamp between request and
    receipt; 4. the child exits cleanly and is recorded as the writer."""
    fmt, count = VideoFormat(160, 120), 20
    ring = segments.create(fmt, slots=4)
    reader = VideoReader(segments.open(ring.name))
    base = pixel_base(fmt.shape)
    parent_end, child_end = SPAWN.Pipe()
    proc = SPAWN.Process(
        target=ring_children.video_writer_child, args=(ring.name, count, child_end)
    )
    proc.start()
    child_end.close()
    try:
        for seq in range(1, count + 1):
            asked = time.monotonic()
            parent_end.send(seq)
            wait_until(
                lambda seq=seq: reader.newest_seq >= seq or not proc.is_alive(),
                30,
                f"frame {seq} from the writer child",
                lambda: (reader.newest_seq, proc.exitcode),
            )
            frame = reader.newest()
            assert frame is not None, f"frame {seq} never arrived; child exit code {proc.exitcode}"
            assert frame.seq == seq
            assert np.array_equal(frame.data, pixels_for(base, seq))
            assert asked - 1e-6 <= frame.timestamp <= time.monotonic() + 1e-6
            assert abs(frame.wall_time - time.time()) < 60
        assert read_ring_pids(ring.name) == (os.getpid(), proc.pid)
    finally:
        parent_end.close()
        code = _reap(proc)
    assert code == 0, f"writer child exited with {code}"


def test_writer_in_a_spawned_child_free_running(segments: Segments) -> None:
    """The seqlock under contention: while a child writes frames back to back,
    every copy the reader gets is one whole frame, never a mix of two."""
    fmt, count = VideoFormat(320, 240), 1500
    ring = segments.create(fmt, slots=4)
    reader = VideoReader(segments.open(ring.name))
    base = pixel_base(fmt.shape)
    proc = SPAWN.Process(target=ring_children.video_writer_child, args=(ring.name, count, None))
    proc.start()
    verified, overwritten, torn, last_seq = 0, 0, [], 0
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while reader.newest_seq < count:
            assert time.monotonic() < deadline, (
                f"saw seq {reader.newest_seq} of {count}; child {proc.exitcode}"
            )
            assert proc.is_alive() or reader.newest_seq == count, (
                f"child exited with {proc.exitcode}"
            )
            frame = reader.newest()
            if frame is None:
                continue
            assert frame.seq >= last_seq
            last_seq = frame.seq
            try:
                copy = frame.copy()
            except FrameOverwrittenError:
                overwritten += 1
                continue
            if np.array_equal(copy.data, pixels_for(base, copy.seq)):
                verified += 1
            else:
                torn.append(copy.seq)
    finally:
        code = _reap(proc)
    assert code == 0, f"writer child exited with {code}"
    assert not torn, f"torn frames handed out as valid: {torn[:10]} ({overwritten} refused)"
    assert verified > 0
    final = reader.newest()
    assert final is not None and final.seq == count
    assert np.array_equal(final.data, pixels_for(base, count))


def test_reader_child_exit_does_not_remove_the_segment(segments: Segments) -> None:
    """Python 3.11's resource tracker unlinks segments attached through
    SharedMemory when the attaching process exits. A reader that maps the ring,
    reads and exits must leave it in place, and never start a tracker."""
    fmt = VideoFormat(32, 16)
    ring = segments.create(fmt, slots=3)
    writer = VideoWriter(ring)
    base = pixel_base(fmt.shape)
    _write_frame(writer, base)
    _write_frame(writer, base)

    proc = SPAWN.Process(target=ring_children.reader_child, args=(ring.name, fmt.width, fmt.height))
    proc.start()
    code = _reap(proc)
    assert code != ring_children.EXIT_TRACKER_STARTED, "the reader child started a resource tracker"
    assert code == 0, f"reader child exited with {code}"

    assert (SHM_DIR / ring.name).exists()
    frame = VideoReader(segments.open(ring.name)).newest()
    assert frame is not None and frame.seq == 2


# --- audio -------------------------------------------------------------------


def _audio(
    segments: Segments, capacity: int, *, rate: int = 48000, channels: int = 2
) -> tuple[AudioWriter, Ring]:
    ring = segments.create(AudioFormat(rate, channels), slots=capacity)
    return AudioWriter(ring), segments.open(ring.name)


def _ts_ns(t0_ns: int, position: int, rate: int = 48000) -> int:
    return t0_ns + position * NS_PER_S // rate


def test_audio_header_round_trip(segments: Segments) -> None:
    writer, reader_ring = _audio(segments, 960, rate=44100, channels=3)
    assert reader_ring.format == AudioFormat(44100, 3)
    assert reader_ring.kind == "audio"
    assert reader_ring.slot_count == 960
    assert "audio 44100 Hz x3 capacity=960" in repr(reader_ring)
    assert writer.capacity == AudioReader(reader_ring).capacity == 960
    with pytest.raises(ValueError, match="not a video ring"):
        VideoReader(reader_ring)
    with pytest.raises(ValueError, match="not a writable audio ring"):
        AudioWriter(reader_ring)


def test_audio_round_trip_across_the_wrap(segments: Segments) -> None:
    """Blocks of 300 into a 1000-frame ring, each read back as soon as written:
    the fourth block and the fifth cross the end of the buffer."""
    writer, reader_ring = _audio(segments, 1000)
    reader = AudioReader(reader_ring)
    assert reader.read() is None and reader.available == 0
    t0_ns, position = time.monotonic_ns(), 0
    region = np.frombuffer(reader_ring.buffer, np.uint8)
    for frames in (300, 300, 300, 300, 250, 700):
        writer.write(samples_for(position, frames, 2), _ts_ns(t0_ns, position))
        assert writer.position == position + frames
        assert reader.available == frames

        data = reader.read()
        assert data is not None
        assert data.data.dtype == np.float32 and data.data.shape == (frames, 2)
        assert _owned(data.data)
        assert not np.shares_memory(data.data, region)
        assert data.position == position
        assert np.array_equal(data.data, samples_for(position, frames, 2))
        assert data.timestamp == pytest.approx(_ts_ns(t0_ns, position) / NS_PER_S, abs=1e-9)
        assert (data.sampleRate, data.numberOfFrames, data.numberOfChannels) == (48000, frames, 2)
        assert data.duration == pytest.approx(frames / 48000)
        position += frames
        assert reader.position == position
    del region
    assert reader.read() is None
    assert reader.overrun_frames == 0


def test_audio_read_of_several_blocks_starts_at_the_first_sample(segments: Segments) -> None:
    writer, reader_ring = _audio(segments, 1000, rate=44100)
    reader = AudioReader(reader_ring)
    t0_ns = time.monotonic_ns()
    for start in (0, 250, 500, 750):  # the last block ends exactly at the wrap
        writer.write(samples_for(start, 250, 2), _ts_ns(t0_ns, start, 44100))
    data = reader.read()
    assert data is not None and data.position == 0
    assert np.array_equal(data.data, samples_for(0, 1000, 2))
    assert data.timestamp == pytest.approx(t0_ns / NS_PER_S, abs=1e-6)


def test_audio_reader_starts_at_the_writer_unless_from_start(segments: Segments) -> None:
    writer, reader_ring = _audio(segments, 1000)
    writer.write(samples_for(0, 400, 2), 0)
    late = AudioReader(reader_ring)
    early = AudioReader(reader_ring, from_start=True)
    assert late.position == 400 and late.read() is None
    data = early.read()
    assert data is not None and data.position == 0 and data.numberOfFrames == 400


def test_audio_overrun_skips_to_the_oldest_retained_samples(segments: Segments) -> None:
    """1. the writer gets 2500 frames ahead of a 1000-frame ring: the reader
    gets the newest 1000 and counts 1500 lost; 2. a read within capacity loses
    nothing; 3. a second overrun adds exactly what it skipped."""
    writer, reader_ring = _audio(segments, 1000)
    reader = AudioReader(reader_ring)
    t0_ns = time.monotonic_ns()

    def write(start: int, stop: int, block: int) -> None:
        for position in range(start, stop, block):
            writer.write(samples_for(position, block, 2), _ts_ns(t0_ns, position))

    write(0, 2500, 500)
    assert reader.available == 2500
    data = reader.read()
    assert data is not None
    assert data.position == 1500 and reader.overrun_frames == 1500
    assert np.array_equal(data.data, samples_for(1500, 1000, 2))
    assert data.timestamp == pytest.approx(_ts_ns(t0_ns, 1500) / NS_PER_S, abs=1e-6)
    assert reader.position == 2500

    write(2500, 2800, 300)
    data = reader.read()
    assert data is not None and data.position == 2500 and data.numberOfFrames == 300
    assert reader.overrun_frames == 1500

    write(2800, 4000, 400)
    data = reader.read()
    assert data is not None and data.position == 3000
    assert np.array_equal(data.data, samples_for(3000, 1000, 2))
    assert reader.overrun_frames == 1700


def test_audio_overrun_of_a_late_reader_from_start(segments: Segments) -> None:
    writer, reader_ring = _audio(segments, 1000)
    for position in range(0, 3000, 600):
        writer.write(samples_for(position, 600, 2), 0)
    reader = AudioReader(reader_ring, from_start=True)
    data = reader.read()
    assert data is not None and data.position == 2000 and reader.overrun_frames == 2000


def test_audio_block_larger_than_the_ring(segments: Segments) -> None:
    """A block longer than the ring keeps its newest samples; positions and
    timestamps still count every sample the writer was given."""
    writer, reader_ring = _audio(segments, 1000)
    reader = AudioReader(reader_ring)
    t0_ns = time.monotonic_ns()
    writer.write(samples_for(0, 2500, 2), t0_ns)
    assert writer.position == 2500
    data = reader.read()
    assert data is not None
    assert data.position == 1500 and reader.overrun_frames == 1500
    assert np.array_equal(data.data, samples_for(1500, 1000, 2))
    assert data.timestamp == pytest.approx(_ts_ns(t0_ns, 1500) / NS_PER_S, abs=1e-6)


def test_audio_max_frames_limits_a_read(segments: Segments) -> None:
    writer, reader_ring = _audio(segments, 1000)
    reader = AudioReader(reader_ring)
    t0_ns = time.monotonic_ns()
    writer.write(samples_for(0, 800, 2), t0_ns)

    for position, frames in ((0, 300), (300, 300), (600, 200)):
        data = reader.read(max_frames=300)
        assert data is not None and (data.position, data.numberOfFrames) == (position, frames)
        assert np.array_equal(data.data, samples_for(position, frames, 2))
        assert data.timestamp == pytest.approx(_ts_ns(t0_ns, position) / NS_PER_S, abs=1e-6)
    assert reader.read(max_frames=300) is None
    assert reader.overrun_frames == 0


def test_audio_max_frames_with_overrun_counts_the_skip_once(segments: Segments) -> None:
    writer, reader_ring = _audio(segments, 1000)
    reader = AudioReader(reader_ring)
    writer.write(samples_for(0, 600, 2), 0)
    writer.write(samples_for(600, 600, 2), 0)
    writer.write(samples_for(1200, 600, 2), 0)  # 800 frames gone

    assert reader.read(max_frames=0) is None
    data = reader.read(max_frames=100)
    assert data is not None and data.position == 800 and data.numberOfFrames == 100
    assert reader.overrun_frames == 800
    data = reader.read()
    assert data is not None and data.position == 900 and data.numberOfFrames == 900
    assert reader.overrun_frames == 800


def test_audio_reader_against_a_writer_in_a_spawned_child(segments: Segments) -> None:
    """A child writes positional samples back to back into a small ring while
    the test reads as fast as it can. Every sample handed out must be the one
    at its position (no block overwritten mid-copy passes as intact), and the
    samples read plus ``overrun_frames`` must account for every sample."""
    capacity, total, block, rate = 2048, 2_000_000, 256, 48000
    writer_ring = segments.create(AudioFormat(rate, 2), slots=capacity)
    reader = AudioReader(segments.open(writer_ring.name), from_start=True)
    proc = SPAWN.Process(
        target=ring_children.audio_writer_child, args=(writer_ring.name, total, block)
    )
    proc.start()
    received, reads, torn = 0, 0, []
    clock_origin: float | None = None
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while reader.position < total:
            assert time.monotonic() < deadline, (
                f"read up to {reader.position} of {total}; child {proc.exitcode}"
            )
            skipped_before, expected = reader.overrun_frames, reader.position
            data = reader.read(max_frames=None if reads % 3 else 1500)
            if data is None:
                assert proc.is_alive(), f"child exited with {proc.exitcode} at {reader.position}"
                continue
            reads += 1
            assert data.position - expected == reader.overrun_frames - skipped_before
            if not np.array_equal(data.data, samples_for(data.position, data.numberOfFrames, 2)):
                torn.append(data.position)
            origin = data.timestamp - data.position / rate
            clock_origin = origin if clock_origin is None else clock_origin
            assert origin == pytest.approx(clock_origin, abs=1e-6)
            received += data.numberOfFrames
    finally:
        code = _reap(proc)
    assert code == 0, f"writer child exited with {code}"
    assert not torn, (
        f"{len(torn)} of {reads} reads returned overwritten samples, first at {torn[:5]}"
    )
    assert received + reader.overrun_frames == total
