"""Shared-memory rings: the memory layout the daemon and every client agree on.

Design note. A ring is one POSIX shared-memory segment (a file under
/dev/shm) with one writer and any number of readers:

    [header, 256 B][slot 0][slot 1]...        video: fixed slots
    [header, 256 B][PCM frames x channels]    audio: one circular buffer

A video slot is a 64-byte header of uint64 words (begin, end, monotonic ns,
wall ns, and the camera frame it was made from: capture seq and ns)
followed by the pixels, 64-byte aligned. The header words form a
seqlock: the writer stores ``begin = seq``, writes the pixels, stores the
timestamps and ``end = seq``, then publishes ``newest_seq``. A reader
accepts a slot only while ``begin == end == seq``, and trusts the pixels it
read only if ``begin`` still reads ``seq`` afterwards.

Ordering, step by step (`fence` is a full barrier on aarch64 and nothing on
x86-64, whose stores and loads stay in program order; see
`mediastream.fences`):

    writer                              reader
    W1 begin = seq                      R1 s = newest
       fence  (W1 before W2)               fence  (R1 before R2)
    W2 pixels                           R2 end == s and begin == s
       fence  (W2 before W3)               fence  (R2 before R3)
    W3 timestamps, end = seq            R3 pixels (the caller's reads)
       fence  (W3 before W4)               fence  (R3 before R4)
    W4 newest = seq                     R4 begin == s ("valid")

Slots are used in turn, except those a reader holds (`mediastream.holds`,
which argues the hold's own order): the writer skips them, so frame s is
not always in slot s mod n. The writer stores the slot it published in
``newest_slot`` before ``newest``; a reader looks there first and checks
the seqlock as always, so a stale hint costs a look at the other slots,
never a wrong frame.

A reader that sees ``newest = s`` (R1) sees ``end = s`` and the pixels
behind it (W4 after W3 after W2). If R2 passes, the slot held frame s and
the writer had not yet stored its next ``begin`` when R2 read it. If the
writer then reuses the slot, its new ``begin`` (W1) becomes visible before
any of its new pixels (W2), so a reader whose R3 saw a new pixel sees the
new ``begin`` at R4 and refuses the frame: no interleaving hands out a torn
slot as valid. Without the fences, aarch64 may reorder W1 after W2 or R3
after R4, and a torn frame would pass.

Readers do not poll and need no socket: the ``newest`` word is also a
futex (`Doorbell`, `mediastream.futex`). Writers wake it after each frame
or block (after W4); a reader reads the word before it looks at the ring
(before R1) and waits on the value it saw. The kernel compares that value
with the word under its own lock, so a frame published after the look
either changed the word first (the wait returns at once) or wakes the
waiter; no frame is slept through. Nothing else is ordered by the futex:
a reader trusts only the seqlock. There is no waiter count to skip the
wake when nobody waits: readers may not write to a ring, and a count any
reader could set to zero would let one reader put the others to sleep
until their timeouts. The wake costs about 2 us a frame.

The audio writer announces the cursor it is about to reach in
``newest_begin``, copies a block, then advances ``cursor`` (frames written
since the start). A reader keeps its own cursor and counts an overrun when
the writer is more than the capacity ahead of it.

Segments are opened as files, never through `multiprocessing.shared_memory`:
on Python 3.11 attaching by name registers the segment with the resource
tracker, which unlinks it when the attaching process exits. Readers map the
file read-only; only the daemon unlinks.
"""

from __future__ import annotations

import mmap
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

import numpy as np
from numpy.typing import DTypeLike

from . import futex
from .errors import NotAllowedError, NotReadableError
from .fences import fence, store_load_fence
from .frames import (
    NS_PER_S,
    SLOT_BEGIN,
    SLOT_CAPTURE_NS,
    SLOT_CAPTURE_SEQ,
    SLOT_END,
    SLOT_MONOTONIC_NS,
    SLOT_WALL_NS,
    SLOT_WORDS,
    AudioData,
    VideoFrame,
)
from .holds import HeldSeqs
from .paths import group_to_join

__all__ = [
    "FLOAT_PIXEL_FORMATS",
    "PIXEL_FORMATS",
    "SHM_DIR",
    "AudioFormat",
    "AudioReader",
    "AudioWriter",
    "Doorbell",
    "Ring",
    "RingFormat",
    "VideoFormat",
    "VideoReader",
    "VideoWriter",
    "check_segment_name",
    "free_shm_bytes",
    "read_ring_pids",
    "ring_bytes",
]

SHM_DIR = Path("/dev/shm")
MAGIC = int.from_bytes(b"MBRKRING", "little")
LAYOUT_VERSION = 2  # 2: capture ids in the slot header, newest_slot
HEADER_BYTES = 256
SLOT_HEADER_BYTES = 64
ALIGN = 64
# Pixel format -> channels. The float ones are tensors for models: RGB as
# float32, interleaved (H x W x 3) or planar (3 x H x W, what NCHW takes).
PIXEL_FORMATS = {"bgr24": 3, "rgb24": 3, "gray8": 1, "rgbf32": 3, "rgbf32planar": 3}
FLOAT_PIXEL_FORMATS = frozenset({"rgbf32", "rgbf32planar"})
_PLANAR_PIXEL_FORMATS = frozenset({"rgbf32planar"})
KIND_VIDEO, KIND_AUDIO = 1, 2
STATE_LIVE, STATE_ENDED = 1, 2

_SEGMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

HEADER = np.dtype(
    [
        ("magic", "<u8"),
        ("version", "<u4"),
        ("kind", "<u4"),
        ("owner_pid", "<u4"),
        ("writer_pid", "<u4"),
        ("state", "<u4"),
        ("slot_count", "<u4"),
        ("width", "<u4"),
        ("height", "<u4"),
        ("channels", "<u4"),
        ("sample_rate", "<u4"),
        ("pixel_format", "S16"),
        ("slot_stride", "<u8"),
        ("data_offset", "<u8"),
        ("capacity", "<u8"),  # audio: frames the PCM ring holds
        ("newest", "<u8"),  # video: newest complete seq; audio: write cursor
        ("newest_ns", "<u8"),  # CLOCK_MONOTONIC ns of that frame / cursor
        ("newest_begin", "<u8"),  # audio: the cursor's seqlock twin, stored first
        ("newest_slot", "<u8"),  # video: the slot newest is in (a hint)
    ]
)
assert HEADER.itemsize <= HEADER_BYTES
_NEWEST_OFFSET: int = HEADER.fields["newest"][1]  # type: ignore[index]


@dataclass(frozen=True, slots=True)
class VideoFormat:
    width: int
    height: int
    pixel_format: str = "bgr24"

    def __post_init__(self) -> None:
        if self.pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"pixel format {self.pixel_format!r} is not one of {list(PIXEL_FORMATS)}"
            )
        if not (0 < self.width <= 16384 and 0 < self.height <= 16384):
            raise ValueError(f"frame size {self.width}x{self.height} is out of range")

    @property
    def shape(self) -> tuple[int, ...]:
        channels = PIXEL_FORMATS[self.pixel_format]
        if self.pixel_format in _PLANAR_PIXEL_FORMATS:
            return (channels, self.height, self.width)
        return (self.height, self.width) if channels == 1 else (self.height, self.width, channels)

    @property
    def dtype(self) -> np.dtype[Any]:
        """float32 for the tensor formats, else uint8."""
        return np.dtype(np.float32 if self.pixel_format in FLOAT_PIXEL_FORMATS else np.uint8)

    @property
    def frame_bytes(self) -> int:
        channels = PIXEL_FORMATS[self.pixel_format]
        return self.width * self.height * channels * self.dtype.itemsize


@dataclass(frozen=True, slots=True)
class AudioFormat:
    sample_rate: int
    channels: int

    def __post_init__(self) -> None:
        if not (0 < self.sample_rate <= 768_000 and 0 < self.channels <= 64):
            raise ValueError(
                f"audio format {self.sample_rate} Hz x {self.channels} is out of range"
            )


RingFormat = VideoFormat | AudioFormat


def check_segment_name(name: str) -> str:
    """Return ``name`` if it is a safe segment name (no path), else raise ValueError."""
    if not _SEGMENT_NAME.fullmatch(name):
        raise ValueError(f"invalid shared-memory segment name {name!r}")
    return name


def free_shm_bytes(shm_dir: Path = SHM_DIR) -> int:
    stat = os.statvfs(shm_dir)
    return stat.f_bavail * stat.f_frsize


def _array(
    buffer: mmap.mmap, dtype: DTypeLike, shape: tuple[int, ...], offset: int = 0
) -> np.ndarray:
    """A numpy view into ``buffer`` that pins the mapping while it lives.

    ``np.frombuffer`` keeps a memoryview (an export) as the array's base, so
    ``mmap.close()`` raises BufferError instead of unmapping under the view;
    ``np.ndarray(buffer=mapping)`` keeps no export, and a view made that way
    outliving `Ring.close` reads unmapped memory (a segfault).
    """
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(buffer, dtype, count, offset).reshape(shape)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _layout(fmt: RingFormat, slots: int) -> tuple[int, int]:
    """(slot stride or sample bytes, total segment size) for a format."""
    if isinstance(fmt, VideoFormat):
        stride = _align(SLOT_HEADER_BYTES + fmt.frame_bytes)
        return stride, HEADER_BYTES + stride * slots
    sample_bytes = 4 * fmt.channels
    return sample_bytes, HEADER_BYTES + _align(sample_bytes * slots)


def ring_bytes(fmt: RingFormat, slots: int) -> int:
    """The size in bytes of the segment `Ring.create` makes for ``fmt`` and
    ``slots`` (video frames, or audio frames per channel), header included."""
    return _layout(fmt, slots)[1]


SegmentT = TypeVar("SegmentT")


def create_segment(
    name: str,
    size: int,
    wrap: Callable[[mmap.mmap], SegmentT],
    *,
    mode: int,
    gid: int | None,
    shm_dir: Path,
) -> SegmentT:
    """Create, size and pre-fault the segment ``name``; ``wrap`` writes its
    header and returns the object over the mapping. On any failure the file
    is unlinked. Raises `NotReadableError` when /dev/shm has no room,
    `FileExistsError` if the name is taken."""
    path = shm_dir / check_segment_name(name)
    _check_room(name, size, shm_dir)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not narrow the mode
        if gid is not None:
            os.fchown(fd, -1, gid)
        _allocate(fd, size, name, shm_dir)
        return wrap(mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def open_segment(name: str, what: str, *, writable: bool, shm_dir: Path) -> mmap.mmap:
    """Map the segment ``name`` (a ``what``), read-only unless ``writable``.
    Raises `NotReadableError` when it is missing or too small for a header,
    `NotAllowedError` (naming the group to join) without permission."""
    path = shm_dir / check_segment_name(name)
    try:
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    except FileNotFoundError as exc:
        raise NotReadableError(f"{what} {name!r} does not exist in {shm_dir}") from exc
    except PermissionError as exc:
        raise NotAllowedError(
            f"no permission to map {path}: ask the administrator to add you to "
            f"{group_to_join(path)}"
        ) from exc
    try:
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            raise NotReadableError(f"segment {name!r} is too small to be a {what}")
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        return mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, prot)
    finally:
        os.close(fd)


class Segment:
    """What every mapped segment shares: ``close()`` unmaps (idempotent) and
    never removes the file, only the daemon calls `unlink`; views still
    alive keep the mapping until they go; one left open warns."""

    name: str
    _mmap: mmap.mmap | None = None  # set last: a half-built segment reads as closed
    _views: ClassVar[tuple[str, ...]] = ()  # attributes that are views of the mapping

    @staticmethod
    def unlink(name: str, shm_dir: Path = SHM_DIR) -> None:
        """Remove the segment (daemon only); mappings stay usable. Idempotent."""
        (shm_dir / check_segment_name(name)).unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._mmap is None

    def close(self) -> None:
        """Unmap. Idempotent."""
        mapping, self._mmap = self._mmap, None
        if mapping is None:
            return
        for view in self._views:
            delattr(self, view)
        try:
            mapping.close()
        except BufferError:
            pass  # frames still export it; the mapping dies with the last one

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._mmap is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()


class Ring(Segment):
    """A mapped ring segment. Use `create` (the daemon) or `open`.

    ``close()`` unmaps (idempotent); it never removes the segment: only the
    daemon calls `unlink`. Frames still referencing the mapping keep it alive.
    """

    _views = ("header",)

    def __init__(self, name: str, mapping: mmap.mmap, writable: bool) -> None:
        """Wrap a mapping (`create` and `open` call this); raises `NotReadableError`
        and unmaps when the header is not a valid ring's."""
        self.name = name
        self.writable = writable
        snapshot = np.ndarray((), HEADER, buffer=mapping).copy()  # no export: close() below works
        try:
            self.format, self.slot_count = _parse_header(name, snapshot, len(mapping))
        except BaseException:
            mapping.close()
            raise
        self.header = _array(mapping, HEADER, ())
        self._mmap = mapping

    @classmethod
    def create(
        cls,
        name: str,
        fmt: RingFormat,
        slots: int,
        *,
        mode: int = 0o640,
        gid: int | None = None,
        shm_dir: Path = SHM_DIR,
    ) -> Ring:
        """Create, size and pre-fault a new segment; the caller owns it.

        ``slots`` is the number of video frames, or of audio frames (samples
        per channel) for an audio ring. Raises `NotReadableError` when
        /dev/shm has no room, `FileExistsError` if the name is taken.
        """
        stride, size = _layout(fmt, slots)

        def wrap(mapping: mmap.mmap) -> Ring:
            _write_header(mapping, fmt, slots, stride)
            return cls(name, mapping, writable=True)

        return create_segment(name, size, wrap, mode=mode, gid=gid, shm_dir=shm_dir)

    @classmethod
    def open(cls, name: str, *, writable: bool = False, shm_dir: Path = SHM_DIR) -> Ring:
        """Map an existing segment, read-only unless ``writable``.

        Raises `NotReadableError` when it is missing or not a ring.
        """
        return cls(name, open_segment(name, "ring", writable=writable, shm_dir=shm_dir), writable)

    @property
    def buffer(self) -> mmap.mmap:
        if self._mmap is None:
            raise ValueError(f"ring {self.name!r} is closed")
        return self._mmap

    @property
    def kind(self) -> Literal["video", "audio"]:
        return "video" if isinstance(self.format, VideoFormat) else "audio"

    @property
    def ended(self) -> bool:
        return int(self.header["state"]) == STATE_ENDED

    def mark_ended(self) -> None:
        self.header["state"] = STATE_ENDED

    def set_pids(self, *, owner: int | None = None, writer: int | None = None) -> None:
        if owner is not None:
            self.header["owner_pid"] = owner
        if writer is not None:
            self.header["writer_pid"] = writer

    def __repr__(self) -> str:
        if self._mmap is None:
            return f"<Ring {self.name!r} closed>"
        fmt = self.format
        if isinstance(fmt, VideoFormat):
            what = f"video {fmt.width}x{fmt.height} {fmt.pixel_format} slots={self.slot_count}"
        else:
            what = f"audio {fmt.sample_rate} Hz x{fmt.channels} capacity={self.slot_count}"
        state = "ended" if self.ended else "live"
        return f"<Ring {self.name!r} {what} newest={int(self.header['newest'])} {state}>"


def _parse_header(name: str, h: np.ndarray, mapped_bytes: int) -> tuple[RingFormat, int]:
    """(format, slot count) from an untrusted header; raises `NotReadableError`."""
    if int(h["magic"]) != MAGIC or int(h["version"]) != LAYOUT_VERSION:
        raise NotReadableError(f"segment {name!r} is not a version {LAYOUT_VERSION} ring")
    try:
        fmt = _header_format(h)
    except ValueError as exc:
        raise NotReadableError(f"ring {name!r} has an invalid format: {exc}") from exc
    slots = int(h["slot_count"])
    stride, size = _layout(fmt, slots)
    if slots < 1 or size > mapped_bytes or int(h["slot_stride"]) != stride:
        raise NotReadableError(f"ring {name!r} has an inconsistent header")
    return fmt, slots


def _header_format(h: np.ndarray) -> RingFormat:
    kind = int(h["kind"])
    if kind == KIND_VIDEO:
        pixel_format = h["pixel_format"].item().rstrip(b"\0").decode("ascii", "replace")
        return VideoFormat(int(h["width"]), int(h["height"]), pixel_format)
    if kind == KIND_AUDIO:
        return AudioFormat(int(h["sample_rate"]), int(h["channels"]))
    raise ValueError(f"unknown kind {kind}")


def _check_room(name: str, size: int, shm_dir: Path) -> None:
    free = free_shm_bytes(shm_dir)
    if size > free:
        raise NotReadableError(_no_room_message(name, size, free, shm_dir))


def _no_room_message(name: str, size: int, free: int, shm_dir: Path) -> str:
    mib = 1024 * 1024
    return (
        f"{shm_dir} has {free / mib:.1f} MiB free, the ring {name!r} needs {size / mib:.1f} MiB; "
        "raise the shm size (docker --shm-size, or the tmpfs size) or ask for smaller frames"
    )


def _allocate(fd: int, size: int, name: str, shm_dir: Path) -> None:
    """Reserve every page now: ENOSPC here instead of SIGBUS on first touch."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        free = free_shm_bytes(shm_dir)
        raise NotReadableError(_no_room_message(name, size, free, shm_dir)) from exc


def _write_header(mapping: mmap.mmap, fmt: RingFormat, slots: int, stride: int) -> None:
    h = np.ndarray((), HEADER, buffer=mapping)
    h["magic"], h["version"], h["slot_count"] = MAGIC, LAYOUT_VERSION, slots
    h["slot_stride"], h["data_offset"], h["state"] = stride, HEADER_BYTES, STATE_LIVE
    h["owner_pid"] = os.getpid()
    if isinstance(fmt, VideoFormat):
        h["kind"], h["width"], h["height"] = KIND_VIDEO, fmt.width, fmt.height
        h["channels"] = PIXEL_FORMATS[fmt.pixel_format]
        h["pixel_format"] = fmt.pixel_format.encode("ascii")
    else:
        h["kind"], h["sample_rate"], h["channels"] = KIND_AUDIO, fmt.sample_rate, fmt.channels
        h["capacity"] = slots


def read_ring_pids(name: str, shm_dir: Path = SHM_DIR) -> tuple[int, int] | None:
    """(owner pid, writer pid) of a segment, or None if it is not a readable ring."""
    try:
        with Ring.open(name, shm_dir=shm_dir) as ring:
            return int(ring.header["owner_pid"]), int(ring.header["writer_pid"])
    except (NotReadableError, ValueError, OSError):
        return None


class _Cursor:
    """Fast access to the header's newest, newest_ns, newest_begin and
    newest_slot words (hot path)."""

    def __init__(self, ring: Ring) -> None:
        offset = _NEWEST_OFFSET
        self.words = _array(ring.buffer, "<u8", (4,), offset)
        self.address = int(self.words.ctypes.data)  # of newest: the doorbell's futex word


class Doorbell:
    """The ring's ``newest`` word as a futex (`mediastream.futex`): its writer
    rings it after each frame or block, readers wait on it. Holds the ring's
    mapping: close the ring only once no thread waits here."""

    def __init__(self, ring: Ring) -> None:
        cursor = _Cursor(ring)
        self._words, self._address = cursor.words, cursor.address

    def value(self) -> int:
        """What the word says now: read it before looking for news, then wait on it."""
        return int(self._words[0])

    def wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until the word moves from ``seen`` (or ``timeout_s`` passes)."""
        futex.wait(self._address, seen, timeout_s)

    def ring(self) -> None:
        futex.wake_all(self._address)


class VideoWriter:
    """Writes frames into a video ring. One writer per ring.

    view = writer.begin()      # the next free slot's pixels, as a numpy view
    ...fill view in place...
    writer.commit(monotonic_ns, wall_ns)

    ``holds`` are the readers' hold tables (`mediastream.holds`): their
    slots are skipped. With none, a slot costs no system call.
    """

    def __init__(self, ring: Ring, holds: HeldSeqs | None = None) -> None:
        if not isinstance(ring.format, VideoFormat) or not ring.writable:
            raise ValueError(f"{ring!r} is not a writable video ring")
        self.ring = ring
        self.holds = holds if holds is not None else HeldSeqs()
        cursor = _Cursor(ring)
        self._cursor, self._doorbell = cursor.words, cursor.address
        self._slots = [_slot_arrays(ring, i) for i in range(ring.slot_count)]
        self.seq = int(self._cursor[0])  # resume after a capture restart
        self.first_seq = self.seq + 1
        self._index = int(self._cursor[3]) % len(self._slots)  # the slot last published

    def begin(self) -> np.ndarray:
        """Claim the next slot nobody holds and return its pixel view
        (writable, in place)."""
        self.seq += 1
        self._index = self._claim((self._index + 1) % len(self._slots))
        fence()  # W1 before W2: begin is seen before any new pixel
        return self._slots[self._index][1]

    def _claim(self, first: int) -> int:
        """Store ``begin`` in the first slot from ``first`` whose frame no
        reader holds (see `mediastream.holds` for why store, fence, look)."""
        if not self.holds:
            self._slots[first][0][SLOT_BEGIN] = self.seq  # W1: invalidates the old frame first
            return first
        count, known = len(self._slots), self.holds.held()
        for step in range(count):
            index = (first + step) % count
            header = self._slots[index][0]
            previous = int(header[SLOT_BEGIN])
            if previous in known:
                continue  # skipped without a touch: its readers never see it change
            header[SLOT_BEGIN] = self.seq  # W1 (C1)
            store_load_fence()
            if previous not in self.holds.held():  # C2: a hold made meanwhile?
                return index
            header[SLOT_BEGIN] = previous  # held after all: give it back untouched
        # Every slot held: more than the daemon granted. No backpressure, ever.
        self._slots[first][0][SLOT_BEGIN] = self.seq
        return first

    def commit(
        self, monotonic_ns: int, wall_ns: int, capture: tuple[int, int] | None = None
    ) -> int:
        """Publish the claimed slot as frame ``seq``; returns that seq.
        ``capture`` is the camera frame's (seq, monotonic ns) it was made
        from; None: this frame is the camera's own."""
        header = self._slots[self._index][0]
        capture_seq, capture_ns = capture if capture is not None else (self.seq, monotonic_ns)
        fence()  # W2 before W3: the pixels are seen before end
        header[SLOT_MONOTONIC_NS] = monotonic_ns
        header[SLOT_WALL_NS] = wall_ns
        header[SLOT_CAPTURE_SEQ] = capture_seq
        header[SLOT_CAPTURE_NS] = capture_ns
        header[SLOT_END] = self.seq
        fence()  # W3 before W4: end is seen before newest
        self._cursor[3] = self._index  # a hint, checked by the seqlock: no order needed
        self._cursor[1] = monotonic_ns
        self._cursor[0] = self.seq
        futex.wake_all(self._doorbell)  # newest moved: every waiting reader looks again
        return self.seq


def _slot_arrays(ring: Ring, index: int) -> tuple[np.ndarray, np.ndarray]:
    fmt = ring.format
    assert isinstance(fmt, VideoFormat)
    offset = HEADER_BYTES + index * int(ring.header["slot_stride"])
    header = _array(ring.buffer, "<u8", (SLOT_WORDS,), offset)
    pixels = _array(ring.buffer, fmt.dtype, fmt.shape, offset + SLOT_HEADER_BYTES)
    return header, pixels


class VideoReader:
    """Zero-copy access to a video ring's frames."""

    def __init__(self, ring: Ring) -> None:
        fmt = ring.format
        if not isinstance(fmt, VideoFormat):
            raise ValueError(f"{ring!r} is not a video ring")
        self.ring = ring
        self.pixel_format = fmt.pixel_format
        self._cursor = _Cursor(ring).words
        self._slots = [_slot_arrays(ring, i) for i in range(ring.slot_count)]
        for _, pixels in self._slots:
            pixels.flags.writeable = False  # frames are read-only, whatever the mapping

    @property
    def newest_seq(self) -> int:
        """Sequence number of the newest complete frame; 0 before the first."""
        seq = int(self._cursor[0])
        fence()  # R1 before R2
        return seq

    def frame(self, seq: int) -> VideoFrame | None:
        """Frame ``seq`` as a view, or None if no slot holds it intact. The
        newest frame's slot is looked at first, then seq's turn, then all."""
        if seq == 0:
            return None
        count = len(self._slots)
        hint = int(self._cursor[3]) % count
        for index in (hint, seq % count, *range(count)):
            frame = self._frame_in(index, seq)
            if frame is not None:
                return frame
        return None

    def has(self, seq: int) -> bool:
        """Whether a slot has frame ``seq`` complete, without building a frame
        (a hint for waiting: `frame` still checks the seqlock)."""
        count = len(self._slots)
        hint = int(self._cursor[3]) % count
        candidates = (hint, seq % count, *range(count))
        return seq != 0 and any(int(self._slots[i][0][SLOT_END]) == seq for i in candidates)

    def _frame_in(self, index: int, seq: int) -> VideoFrame | None:
        header, pixels = self._slots[index]
        if int(header[SLOT_END]) != seq or int(header[SLOT_BEGIN]) != seq:
            return None
        fence()  # R2 before R3: the pixels are read after the seqlock
        frame = VideoFrame(
            pixels,
            seq,
            int(header[SLOT_MONOTONIC_NS]) / NS_PER_S,
            int(header[SLOT_WALL_NS]) / NS_PER_S,
            self.pixel_format,
            int(header[SLOT_CAPTURE_SEQ]),
            int(header[SLOT_CAPTURE_NS]) / NS_PER_S,
            header,
        )
        return frame if frame.valid else None  # the writer lapped us mid-read

    def newest(self) -> VideoFrame | None:
        """The newest intact frame, or None before the first one."""
        for _ in range(3):  # the writer can lap a reader that was descheduled
            seq = self.newest_seq
            if seq == 0:
                return None
            frame = self.frame(seq)
            if frame is not None:
                return frame
        return None


class AudioWriter:
    """Appends PCM blocks to an audio ring. One writer per ring."""

    def __init__(self, ring: Ring) -> None:
        fmt = ring.format
        if not isinstance(fmt, AudioFormat) or not ring.writable:
            raise ValueError(f"{ring!r} is not a writable audio ring")
        self.ring = ring
        self.capacity = int(ring.header["capacity"])
        self.sample_rate = fmt.sample_rate
        cursor = _Cursor(ring)
        self._cursor, self._doorbell = cursor.words, cursor.address
        self._pcm = _pcm_array(ring, fmt, self.capacity)

    @property
    def position(self) -> int:
        return int(self._cursor[0])

    def write(self, block: np.ndarray, monotonic_ns: int) -> None:
        """Append ``block`` (frames x channels float32) captured at ``monotonic_ns``
        (the time of its first sample)."""
        total = len(block)
        if total > self.capacity:  # only the newest samples fit; the rest count as written
            block = block[-self.capacity :]
        frames = len(block)
        cursor = self.position + total
        # Announce before overwriting: readers treat what this block replaces as lost.
        self._cursor[2] = cursor
        fence()  # the announcement is seen before any sample it covers
        start = (cursor - frames) % self.capacity
        first = min(frames, self.capacity - start)
        self._pcm[start : start + first] = block[:first]
        self._pcm[: frames - first] = block[first:]
        fence()  # the samples are seen before the cursor that covers them
        self._cursor[1] = monotonic_ns + total * NS_PER_S // self.sample_rate
        fence()  # the time is seen before its cursor
        self._cursor[0] = cursor
        futex.wake_all(self._doorbell)


def _pcm_array(ring: Ring, fmt: AudioFormat, capacity: int) -> np.ndarray:
    return _array(ring.buffer, np.float32, (capacity, fmt.channels), HEADER_BYTES)


class AudioReader:
    """Reads an audio ring from its own cursor, counting what it lost."""

    def __init__(self, ring: Ring, *, from_start: bool = False) -> None:
        fmt = ring.format
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"{ring!r} is not an audio ring")
        self.ring = ring
        self.sample_rate = fmt.sample_rate
        self.capacity = int(ring.header["capacity"])
        self._cursor = _Cursor(ring).words
        self._pcm = _pcm_array(ring, fmt, self.capacity)
        self.position = 0 if from_start else int(self._cursor[0])
        self.overrun_frames = 0

    @property
    def available(self) -> int:
        return int(self._cursor[0]) - self.position

    def read(self, max_frames: int | None = None) -> AudioData | None:
        """Copy out the samples written since the last read, or None if none.

        When the writer got more than the ring's capacity ahead, the oldest
        samples are gone: they are skipped and added to ``overrun_frames``.
        """
        consistent = self._read_cursor()
        if consistent is None:
            return None  # the writer is mid-block (or died there): nothing to read yet
        cursor, cursor_ns = consistent
        start = max(self.position, cursor - self.capacity)
        self.overrun_frames += start - self.position
        self.position = start
        end = cursor if max_frames is None else min(cursor, start + max_frames)
        if end <= start:
            return None
        data = self._copy(start, end)
        fence()  # the copy is done before the announcement is read
        # The writer may have overwritten the oldest part while we copied: it
        # announces each block in newest_begin before it touches a sample.
        lost = min(end - start, max(0, int(self._cursor[2]) - self.capacity - start))
        data, start = data[lost:], start + lost
        self.overrun_frames += lost
        self.position = end
        timestamp_ns = cursor_ns - (cursor - start) * NS_PER_S // self.sample_rate
        return AudioData(data, self.sample_rate, timestamp_ns / NS_PER_S, start)

    def _read_cursor(self, tries: int = 1000) -> tuple[int, int] | None:
        """A consistent (cursor, time at cursor) pair (a seqlock over two words),
        or None while the writer copies a block; a block copy takes microseconds,
        so a thousand tries outlast it unless the writer died mid-block."""
        for _ in range(tries):
            cursor = int(self._cursor[0])
            fence()  # the cursor before its time, and before the samples it covers
            cursor_ns = int(self._cursor[1])
            fence()
            if int(self._cursor[2]) == cursor:
                return cursor, cursor_ns
        return None

    def _copy(self, start: int, end: int) -> np.ndarray:
        begin = start % self.capacity
        count = end - start
        first = min(count, self.capacity - begin)
        if first == count:
            return self._pcm[begin : begin + count].copy()
        return np.concatenate((self._pcm[begin:], self._pcm[: count - first]))
