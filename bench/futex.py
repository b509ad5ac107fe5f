"""A second floor: a futex wake through shared memory, no socket at all.

What the ring's doorbell costs with nothing else around it (mediabroker's
readers wait on their ring's newest word the same way, `mediastream.futex`):
FUTEX_WAIT on a shared mapping, and the writer's one FUTEX_WAKE wakes them
all, however many. The segment holds a 32-bit futex word that counts ticks
and a seqlock-guarded (seq, sent ns) pair.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

import numpy as np

from mediastream import futex
from mediastream.ring import SHM_DIR

__all__ = ["FutexReceiver", "FutexSegment", "futex_available"]

SEGMENT_BYTES = 64
# uint64 words: [0] futex word (low 32 bits), [1] begin seq, [2] sent ns, [3] end seq
WORD, BEGIN, SENT_NS, END = range(4)


def futex_available() -> bool:
    return futex.available()


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
        futex.wake_all(self.address)

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
        self._deadline_s = timeout_s

    def receive(self) -> tuple[int, int, bool]:
        segment = self._segment
        give_up = time.monotonic() + self._deadline_s
        while (current := int(segment.futex_word[0])) == self._seen:
            if time.monotonic() > give_up:
                raise TimeoutError("no futex wake within the timeout")
            futex.wait(segment.address, current, self._deadline_s)
        self._seen = current
        words = segment.words
        while True:
            end, sent_ns, begin = int(words[END]), int(words[SENT_NS]), int(words[BEGIN])
            if begin == end:
                return end, time.monotonic_ns() - sent_ns, True

    def close(self) -> None:
        self._segment.close()
