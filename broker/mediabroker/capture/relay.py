"""The relay: a video backend whose "camera" is a client's staging ring.

Design note. A video track generator (`mediastream.generator`) writes into
a staging ring of its own; the daemon opened that file read-only and hands
the descriptor to this capture process on its reader channel (op
``staging``). The relay never maps the staging pixels and never trusts the
staging header's format: the format is the daemon's (its ``params`` and the
real ring's), so only these words of the file are read, each with a system
call that returns short or stale data rather than raising SIGBUS when the
writer truncates, replaces or rewrites its file:

- ``newest`` and ``newest_slot`` (`os.pread`): which frame to take;
- the slot's seqlock header (`os.pread`) before and after the pixels;
- the pixels (`os.preadv`) straight into the real ring's claimed slot (for
  bgr24; rgb24 and gray8 go through one scratch and a colour conversion,
  since every derived source reads bgr24).

A frame is committed only if the slot said ``begin == end == seq`` before
the copy, the copy was complete, and ``begin`` still said ``seq`` after it:
a writer that died mid-frame, lapped us or broke its file has that frame
dropped. To wait for a frame the relay maps the staging file's first page
read-only and futex-waits on ``newest`` there: only the kernel touches that
mapping (a truncated file makes the wait fail with EFAULT, not a signal;
the relay then checks the file's size and sleeps instead of spinning).

Untrusted timing: the relay commits at most ``RATE_FACTOR`` times the
declared frame rate (after a commit it sleeps out the rest of the interval,
then takes the newest frame: newest wins), and a writer's timestamp is kept
only if it lies within the last `MAX_TIMESTAMP_AGE_NS` and after the
previous frame's; otherwise the commit time is used.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mediabroker.capture.backend import RELAY_DRIVER
from mediabroker.errors import CaptureError, EndOfStream
from mediastream import futex
from mediastream.frames import SLOT_BEGIN, SLOT_END, SLOT_MONOTONIC_NS, SLOT_WORDS
from mediastream.ring import HEADER, HEADER_BYTES, SLOT_HEADER_BYTES, VideoFormat, ring_bytes

if TYPE_CHECKING:
    from mediabroker.capture.readers import ReaderChannel

__all__ = ["RATE_FACTOR", "RELAY_DRIVER", "RelayCamera", "StagingFile"]

RATE_FACTOR = 2.0  # commits at most this many times the declared frame rate
MAX_TIMESTAMP_AGE_NS = 1_000_000_000
POLL_S = 0.25  # how often a waiting relay looks at its channel, the daemon and the file
_NEWEST = HEADER.fields["newest"][1]  # type: ignore[index]
_NEWEST_SLOT = HEADER.fields["newest_slot"][1]  # type: ignore[index]
_SLOT_HEADER = struct.Struct(f"<{SLOT_WORDS}Q")
_COLOUR_CODES = {"rgb24": "COLOR_RGB2BGR", "gray8": "COLOR_GRAY2BGR"}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class StagingFile:
    """A writer's staging ring, read through its descriptor only. ``fmt`` and
    ``slots`` are the daemon's; nothing about the layout comes from the file."""

    def __init__(self, fd: int, fmt: VideoFormat, slots: int) -> None:
        self.fd, self.format, self.slots = fd, fmt, slots
        self.size = ring_bytes(fmt, slots)
        self.stride = (self.size - HEADER_BYTES) // slots
        self._page = mmap.PAGESIZE
        address = _libc.mmap(None, self._page, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address is None or address == _MAP_FAILED:
            raise CaptureError(f"cannot map the staging ring's header: errno {ctypes.get_errno()}")
        self._address: int = address  # never read by Python: only futex(2) touches it

    def word(self, offset: int) -> int | None:
        data = os.pread(self.fd, 8, offset)
        return int.from_bytes(data, "little") if len(data) == 8 else None

    def newest(self) -> tuple[int, int] | None:
        """(newest seq, its slot hint), or None when the file is cut short."""
        seq, slot = self.word(_NEWEST), self.word(_NEWEST_SLOT)
        return None if seq is None or slot is None else (seq, slot % self.slots)

    def slot_header(self, index: int) -> tuple[int, ...] | None:
        data = os.pread(self.fd, _SLOT_HEADER.size, HEADER_BYTES + index * self.stride)
        return _SLOT_HEADER.unpack(data) if len(data) == _SLOT_HEADER.size else None

    def read_pixels(self, index: int, into: np.ndarray) -> bool:
        """Copy slot ``index``'s pixels into ``into``; False when short."""
        offset = HEADER_BYTES + index * self.stride + SLOT_HEADER_BYTES
        buffer = into.data.cast("B")  # the slot itself: no intermediate copy
        return os.preadv(self.fd, [buffer], offset) == len(buffer)

    def intact(self) -> bool:
        """Whether the file still has the size the daemon checked."""
        return os.fstat(self.fd).st_size >= self.size

    def wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until ``newest`` moves from ``seen`` (or the timeout). A
        file cut short fails the futex at once: then sleep the timeout."""
        if not self.intact():
            time.sleep(timeout_s)
            return
        futex.wait(self._address + _NEWEST, seen, timeout_s)

    def close(self) -> None:
        if self._address:
            _libc.munmap(self._address, self._page)
            self._address = 0
        os.close(self.fd)


class RelayCamera:
    """A `VideoBackend` that relays a generator's staging ring. ``readers``
    is the capture process's channel: the staging file arrives on it, and
    it is polled while the relay waits (hold tables of a silent generator's
    readers are then taken without delay)."""

    ready_at_start = True  # a generator is live before its first frame: it may be silent

    def __init__(
        self, fmt: VideoFormat, frame_rate: float, params: dict[str, Any], readers: ReaderChannel
    ) -> None:
        self.format = fmt
        self.frame_rate = frame_rate
        self._readers = readers
        self._daemon_pid = int(params["daemon_pid"])
        self._staging_format = VideoFormat(fmt.width, fmt.height, str(params["pixel_format"]))
        self._slots = int(params["slots"])
        self._min_gap_ns = int(1e9 / (frame_rate * RATE_FACTOR))
        self._staging: StagingFile | None = None
        self._seen = 0  # the last staging seq looked at
        self._last_commit_ns = 0
        self._last_ts_ns = 0
        self._writer_ts = 0  # the timestamp in the staging slot last copied
        self._scratch: np.ndarray | None = None
        self._convert: Any = None
        if self._staging_format.pixel_format != "bgr24":
            import cv2  # capture processes load OpenCV; the daemon never imports this module

            code = getattr(cv2, _COLOUR_CODES[self._staging_format.pixel_format])
            shape = self._staging_format.shape
            self._scratch = np.empty(shape, np.uint8)
            self._convert = lambda src, dst: cv2.cvtColor(src, code, dst=dst)
        self.dropped = 0  # staging frames torn, short or lapped: never committed
        self.relayed = 0

    def counters(self) -> dict[str, float]:
        return {"relayed": self.relayed, "dropped": self.dropped}

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Wait for the writer's next intact frame (at most ``RATE_FACTOR``
        times the frame rate) and copy it into ``view``."""
        self._pace()
        while True:
            staging = self._wait_for_news()
            if self._copy(staging, view):
                now = time.monotonic_ns()
                self._last_commit_ns = now
                self.relayed += 1
                return self._timestamp(now)

    def _pace(self) -> None:
        due = self._last_commit_ns + self._min_gap_ns
        now = time.monotonic_ns()
        if now < due:
            time.sleep((due - now) / 1e9)

    def _wait_for_news(self) -> StagingFile:
        while True:
            self._readers.poll()
            staging = self._staging or self._take_staging()
            if os.getppid() != self._daemon_pid:
                raise EndOfStream("the daemon is gone")
            if staging is not None:
                newest = staging.newest()
                if newest is not None and newest[0] not in (0, self._seen):
                    return staging
                staging.wait(self._seen, POLL_S)
            else:
                time.sleep(POLL_S / 10)  # the daemon sends the file before our first poll

    def _take_staging(self) -> StagingFile | None:
        fd = self._readers.take_staging()
        if fd is not None:
            self._staging = StagingFile(fd, self._staging_format, self._slots)
        return self._staging

    def _copy(self, staging: StagingFile, view: np.ndarray) -> bool:
        """Copy the newest staging frame into ``view`` if it stays intact."""
        newest = staging.newest()
        if newest is None:
            return False
        seq, hint = newest
        self._seen = seq
        for index in dict.fromkeys((hint, seq % self._slots)):
            before = staging.slot_header(index)
            if before is None or before[SLOT_BEGIN] != seq or before[SLOT_END] != seq:
                continue
            target = self._scratch if self._scratch is not None else view
            complete = staging.read_pixels(index, target)
            after = staging.slot_header(index)
            if complete and after is not None and after[SLOT_BEGIN] == seq:
                if self._convert is not None:
                    self._convert(target, view)
                self._writer_ts = int(before[SLOT_MONOTONIC_NS])
                return True
        self.dropped += 1
        return False

    def _timestamp(self, now: int) -> int:
        """The writer's timestamp if plausible (within the last second, after
        the previous frame's), else the commit time."""
        claimed = self._writer_ts
        if not (now - MAX_TIMESTAMP_AGE_NS <= claimed <= now) or claimed <= self._last_ts_ns:
            claimed = now
        self._last_ts_ns = claimed
        return claimed

    def close(self) -> None:
        if self._staging is not None:
            self._staging.close()
            self._staging = None
