"""A second floor: a futex wake through shared memory, no socket at all.

Not something mediabroker does today: it measures what a frame notification
could cost if the ring's own header word were the thing readers wait on
(FUTEX_WAIT on a shared mapping; the writer's one FUTEX_WAKE wakes them all,
however many). The segment holds a 32-bit futex word that counts ticks and
a seqlock-guarded (seq, sent ns) pair.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import time
from pathlib import Path

import numpy as np

from mediastream.ring import SHM_DIR

__all__ = ["FutexReceiver", "FutexSegment", "futex_available"]

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
FUTEX_WAIT, FUTEX_WAKE = 0, 1
WAKE_ALL = 0x7FFFFFFF
SEGMENT_BYTES = 64
# uint64 words: [0] futex word (low 32 bits), [1] begin seq, [2] sent ns, [3] end seq
WORD, BEGIN, SENT_NS, END = range(4)

_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def futex_available() -> bool:
    return _SYS_FUTEX is not None


def _futex(address: int, op: int, value: int, timeout: _Timespec | None = None) -> int:
    assert _SYS_FUTEX is not None, f"no futex syscall number for {platform.machine()}"
    pointer = ctypes.byref(timeout) if timeout is not None else None
    result: int = _libc.syscall(
        _SYS_FUTEX, ctypes.c_void_p(address), op, ctypes.c_uint32(value), pointer, None, 0
    )
    return result


class FutexSegment:
    """The shared words; the producer creates the file, everyone maps it."""

    def __init__(self, name: str, *, create: bool = False) -> None:
        self.path = SHM_DIR / name
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, SEGMENT_BYTES)
            self._map = mmap.mmap(fd, SEGMENT_BYTES)
        finally:
            os.close(fd)
        self.words = np.ndarray((4,), np.uint64, buffer=self._map)
        self.futex_word = np.ndarray((1,), np.uint32, buffer=self._map)
        self.address = self.words.ctypes.data

    def publish(self, seq: int, sent_ns: int) -> None:
        """Store (seq, sent ns) under the seqlock, bump the word, wake every waiter."""
        words = self.words
        words[BEGIN] = seq
        words[SENT_NS] = sent_ns
        words[END] = seq
        self.futex_word[0] = seq & 0xFFFFFFFF
        _futex(self.address, FUTEX_WAKE, WAKE_ALL)

    def close(self) -> None:
        del self.words, self.futex_word
        self._map.close()

    @staticmethod
    def unlink(name: str) -> None:
        Path(SHM_DIR / name).unlink(missing_ok=True)


class FutexReceiver:
    """Waits on the futex word; returns (seq, latency ns, True) like the other receivers."""

    def __init__(self, name: str, timeout_s: float) -> None:
        self._segment = FutexSegment(name)
        self._seen = int(self._segment.futex_word[0])
        self._timeout = _Timespec(int(timeout_s), int(timeout_s % 1 * 1e9))
        self._deadline_s = timeout_s

    def receive(self) -> tuple[int, int, bool]:
        segment = self._segment
        give_up = time.monotonic() + self._deadline_s
        while (current := int(segment.futex_word[0])) == self._seen:
            if time.monotonic() > give_up:
                raise TimeoutError("no futex wake within the timeout")
            _futex(segment.address, FUTEX_WAIT, current, self._timeout)
        self._seen = current
        words = segment.words
        while True:
            end, sent_ns, begin = int(words[END]), int(words[SENT_NS]), int(words[BEGIN])
            if begin == end:
                return end, time.monotonic_ns() - sent_ns, True

    def close(self) -> None:
        self._segment.close()
