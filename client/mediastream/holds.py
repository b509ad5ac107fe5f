"""Held frames: a reader keeps a frame's slot from being reused, with no copy.

Design note. Readers never write into a ring. A reader that holds frames
owns a small *hold table* of its own: a file it creates in /dev/shm (so only
its user may write it), ``HOLD_ENTRIES`` uint64 words, each 0 (free) or the
seq of a frame it holds. It registers the table with the daemon, which
checks its owner and size, opens it and hands the open file to the ring's
writer (the capture process); the reader then unlinks its name. The writer
honours the first ``limit`` entries the daemon granted, reads them with
``pread`` (a reader that truncates its table hurts nobody: no SIGBUS), and
skips every slot whose frame is held.

The hold and the writer's claim of a slot race; both sides store, fence
(`store_load_fence`) and then load what the other stored:

    reader (hold frame s)              writer (claim slot i, holding p)
    H1 entry = s                       C1 begin[i] = new seq
       store-load fence                   store-load fence
    H2 begin[slot of s] == s ?         C2 p in the tables ?
       no: entry = 0, not held            yes: begin[i] = p, try the next slot

At least one side sees the other's store. If the writer sees the hold, it
gives the slot back before touching a pixel (restoring ``begin`` makes the
untouched frame valid again); if the reader sees the new ``begin``, it gives
up the hold and reads a newer frame. Both may see each other: then the frame
stays intact and the reader just tries again.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import threading
from pathlib import Path

import numpy as np

from .errors import HoldLimitError
from .fences import store_load_fence
from .frames import SLOT_BEGIN, VideoFrame

__all__ = ["HOLD_ENTRIES", "HOLD_TABLE_BYTES", "HeldSeqs", "HoldTable", "hold_table_name"]

HOLD_ENTRIES = 8  # the most frames one track may ever hold
HOLD_TABLE_BYTES = HOLD_ENTRIES * 8


def hold_table_name(ring_name: str) -> str:
    """A fresh name for a table of ``ring_name``'s reader: the ring's name
    marks whose it is, the random tag makes it unguessable."""
    return f"{ring_name}.hold.{secrets.token_hex(6)}"


class _Hold:
    """One entry of a table, as a held frame sees it (`frames.Hold`)."""

    __slots__ = ("_index", "_table", "active")

    def __init__(self, table: HoldTable, index: int) -> None:
        self._table, self._index, self.active = table, index, True

    def release(self) -> None:
        self._table._release(self, self._index)


class HoldTable:
    """A reader's hold table (the reader side). ``limit`` is what the daemon
    granted; ``create`` makes the file, `unlink` removes its name once the
    daemon has opened it, `close` releases every hold."""

    def __init__(self, path: Path, mapping: mmap.mmap) -> None:
        self.path = path
        self.limit = 0
        self._mapping: mmap.mmap | None = mapping
        self._entries = np.ndarray((HOLD_ENTRIES,), "<u8", buffer=mapping)
        self._holds: list[_Hold | None] = [None] * HOLD_ENTRIES
        self._lock = threading.Lock()  # release may come from any thread

    @classmethod
    def create(cls, ring_name: str, shm_dir: Path) -> HoldTable:
        path = shm_dir / hold_table_name(ring_name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)  # the writer (the daemon's user) reads it; only we write
            os.ftruncate(fd, HOLD_TABLE_BYTES)
            return cls(path, mmap.mmap(fd, HOLD_TABLE_BYTES))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def held(self) -> int:
        return sum(1 for hold in self._holds if hold is not None)

    def check_room(self, track_id: str) -> None:
        """Raise `HoldLimitError` when all granted entries are in use."""
        if self.held >= self.limit:
            raise HoldLimitError(
                f"track {track_id} holds {self.held} frames, as many as it may "
                f"([rings] held_frames is {self.limit}); release one before holding another"
            )

    def hold(self, frame: VideoFrame) -> VideoFrame | None:
        """``frame``, held; None when the writer took its slot first (read a
        newer frame). Call `check_room` first."""
        assert frame.slot_header is not None, "only ring frames can be held"
        with self._lock:
            index = self._holds.index(None)
            self._entries[index] = frame.seq  # H1
            store_load_fence()
            if int(frame.slot_header[SLOT_BEGIN]) != frame.seq:  # H2
                self._entries[index] = 0
                return None
            hold = _Hold(self, index)
            self._holds[index] = hold
        return VideoFrame(
            frame.data,
            frame.seq,
            frame.timestamp,
            frame.wall_time,
            frame.format,
            frame.captureSeq,
            frame.captureTimestamp,
            frame.slot_header,
            hold,
        )

    def _release(self, hold: _Hold, index: int) -> None:
        with self._lock:
            if not hold.active:
                return
            hold.active = False
            self._entries[index] = 0
            self._holds[index] = None

    def unlink(self) -> None:
        """Remove the file's name (the daemon and the writer keep it open)."""
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Release every hold and unmap. Idempotent."""
        with self._lock:
            mapping, self._mapping = self._mapping, None
            if mapping is None:
                return
            for hold in self._holds:
                if hold is not None:
                    hold.active = False
            self._holds = [None] * HOLD_ENTRIES
            self._entries[:] = 0
            del self._entries
            mapping.close()
        self.unlink()


class HeldSeqs:
    """The writer's view of every hold table of its ring: open files it was
    handed (by the daemon), each honoured up to its granted ``limit``."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[int, int]] = {}  # holder -> (fd, limit)

    def __bool__(self) -> bool:
        return bool(self._tables)

    def add(self, holder: str, fd: int, limit: int) -> None:
        self.drop(holder)
        self._tables[holder] = (fd, max(0, min(limit, HOLD_ENTRIES)))

    def drop(self, holder: str) -> None:
        entry = self._tables.pop(holder, None)
        if entry is not None:
            os.close(entry[0])

    def held(self) -> set[int]:
        """The seqs held now (two reads of a few bytes per table and slot
        claimed). A table that reads short (its owner truncated it) holds
        only what it still has."""
        seqs: set[int] = set()
        for fd, limit in self._tables.values():
            data = os.pread(fd, limit * 8, 0)
            seqs.update(struct.unpack_from(f"<{len(data) // 8}Q", data))
        seqs.discard(0)
        return seqs

    def close(self) -> None:
        for holder in list(self._tables):
            self.drop(holder)
