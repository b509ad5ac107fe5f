"""Waiting for frames: a ring and its doorbell (internal).

A read first looks at the ring: if a frame newer than the last one returned
is there, it is returned at once, with no system call. Only when there is
none does the reader wait, on the ring's doorbell (a futex on its
``newest`` word, `mediastream.ring.Doorbell`), from the value it saw before
it looked: a frame published in between makes the wait return at once.

A read with ``hold`` holds the frame it returns (`mediastream.holds`); a
frame the writer took back first is passed over for the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import NotReadableError, ReadTimeoutError
from .frames import AudioData, VideoFrame
from .holds import HoldTable
from .ring import AudioReader, Doorbell, Ring, VideoReader

__all__ = ["ReaderClosed", "SourceReader"]

WAKE_CHECK_S = 0.25  # a blocked read re-checks its track's state this often


class ReaderClosed(Exception):
    """The reader was closed while a read waited on it (internal)."""


class SourceReader:
    """Reads one track's source. ``live()`` tells whether to keep waiting."""

    def __init__(self, ring_name: str, live: Callable[[], bool]) -> None:
        self._ring = Ring.open(ring_name)
        try:
            self._frames: VideoReader | AudioReader = (
                VideoReader(self._ring) if self._ring.kind == "video" else AudioReader(self._ring)
            )
            self._doorbell = Doorbell(self._ring)
        except BaseException:
            self._ring.close()
            raise
        self._live = live
        self._closed = False  # set first, without the lock: a waiting read gives up
        self._released = False
        self._lock = threading.Lock()  # one read at a time; close waits for it
        self.holds: HoldTable | None = None  # set by `attach_holds` before a held read
        self.last_seq = 0
        self.delivered = 0
        self.discarded = 0

    @property
    def ring_name(self) -> str:
        return self._ring.name

    def attach_holds(self, table: HoldTable) -> None:
        """The hold table `read` holds frames in (registered with the daemon)."""
        self.holds = table

    def read(self, timeout: float | None, hold_for: str = "") -> VideoFrame | AudioData:
        """The next frame (newest not yet returned) or audio block. A video
        frame is held when ``hold_for`` names the track (`attach_holds`
        first). Raises `ReadTimeoutError`, `HoldLimitError`, or
        `NotReadableError` when the source ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        holds = self.holds if hold_for and isinstance(self._frames, VideoReader) else None
        with self._lock:
            if holds is not None:
                holds.check_room(hold_for)
            while True:
                if self._closed:
                    raise ReaderClosed
                seen = self._doorbell.value()
                item = self._take()
                if holds is not None and isinstance(item, VideoFrame):
                    item = self._hold(holds, item)
                if item is not None:
                    return item
                self._wait(deadline, seen)

    def _hold(self, holds: HoldTable, frame: VideoFrame) -> VideoFrame | None:
        held = holds.hold(frame)
        if held is None:  # the writer took the slot back first: it counts as missed
            self.delivered, self.discarded = self.delivered - 1, self.discarded + 1
        return held

    def _take(self) -> VideoFrame | AudioData | None:
        if isinstance(self._frames, AudioReader):
            data = self._frames.read()
            if data is not None:
                self.delivered += data.numberOfFrames
                self.discarded = self._frames.overrun_frames
            return data
        if self._frames.newest_seq <= self.last_seq:
            return None  # nothing new: no need to build a frame to find out
        frame = self._frames.newest()
        if frame is None or frame.seq <= self.last_seq:
            return None
        if self.last_seq:
            self.discarded += frame.seq - self.last_seq - 1
        self.last_seq = frame.seq
        self.delivered += 1
        return frame

    def _wait(self, deadline: float | None, seen: int) -> None:
        if self._ring.ended or not self._live():
            raise NotReadableError(f"the source of ring {self._ring.name!r} has ended")
        slice_s = WAKE_CHECK_S
        if deadline is not None:
            slice_s = min(slice_s, deadline - time.monotonic())
            if slice_s <= 0:
                raise ReadTimeoutError(f"no new frame on {self._ring.name!r} within the timeout")
        self._doorbell.wait(seen, slice_s)  # only a wake-up: the ring says what is new

    def has_news(self) -> bool:
        """Whether a read would return at once (no system call)."""
        frames = self._frames
        if isinstance(frames, VideoReader):
            seq = frames.newest_seq  # a ring that starts after a re-open names a frame not there
            return seq > self.last_seq and frames.has(seq)
        return frames.available > 0

    @property
    def newest_seq(self) -> int:
        frames = self._frames
        return frames.newest_seq if isinstance(frames, VideoReader) else frames.position

    def close(self) -> None:
        """Idempotent. Frames already handed out stay readable; held ones are
        released."""
        self._closed = True  # a read waiting on this reader gives up within a slice
        with self._lock:
            if self._released:
                return
            self._released = True
            if self.holds is not None:
                self.holds.close()
            del self._doorbell
            self._ring.close()
