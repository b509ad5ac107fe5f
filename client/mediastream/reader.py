"""Waiting for frames: a ring and its doorbell (internal).

A read first looks at the ring: if a frame newer than the last one returned
is there, it is returned at once, with no system call. Only when there is
none does the reader wait, on the ring's doorbell (a futex on its
``newest`` word, `mediastream.ring.Doorbell`), from the value it saw before
it looked: a frame published in between makes the wait return at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import NotReadableError, ReadTimeoutError
from .frames import AudioData, VideoFrame
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
        self.last_seq = 0
        self.delivered = 0
        self.discarded = 0

    def read(self, timeout: float | None) -> VideoFrame | AudioData:
        """The next frame (newest not yet returned) or audio block. Raises
        `ReadTimeoutError`, or `NotReadableError` when the source ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._closed:
                    raise ReaderClosed
                seen = self._doorbell.value()
                item = self._take()
                if item is not None:
                    return item
                self._wait(deadline, seen)

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

    @property
    def newest_seq(self) -> int:
        frames = self._frames
        return frames.newest_seq if isinstance(frames, VideoReader) else frames.position

    def close(self) -> None:
        """Idempotent. Frames already handed out stay readable."""
        self._closed = True  # a read waiting on this reader gives up within a slice
        with self._lock:
            if self._released:
                return
            self._released = True
            del self._doorbell
            self._ring.close()
