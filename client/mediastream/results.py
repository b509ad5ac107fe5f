"""Results rings: the segment a per-frame results channel lives in (the
contract both sides share; ours, not the spec's).

Design note. One process publishes small msgpack maps about camera frames
(``md.publishResults``); it sends each to the daemon on its control
connection, and the daemon, the only writer, stores it in a segment of its
own under the daemon's prefix:

    [header, 256 B][slot 0][slot 1]...[slot n-1]
    slot: 64-byte header of uint64 words, then up to `MAX_RESULT_BYTES` of msgpack

The slot words are begin, end, capture seq, capture ns (the frame's
``captureSeq``/``captureTimestamp``, the same on every track derived from
the camera), the payload's length, the daemon's CLOCK_MONOTONIC ns at the
write and the publisher's at the send. Result ``k`` (counted from 1) goes
to slot ``(k - 1) % n``: nobody holds a result, so no slot is skipped.

The seqlock is the video ring's (`mediastream.ring`), with the same fences:
the writer stores ``begin = k``, fences, writes words and payload, fences,
stores ``end = k``, fences, stores ``newest = k`` and wakes the futex on
``newest``. A reader reads ``newest``, fences, checks ``begin == end == k``,
fences, copies the payload, fences, and accepts it only if ``begin`` still
reads ``k``. Readers map the segment read-only and count the results they
never saw (``newest`` jumped past them) as skipped: nothing queues for a
slow reader. When the channel ends the daemon stores ``state = ended``,
wakes the futex and unlinks the segment; mappings stay valid.
"""

from __future__ import annotations

import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import numpy as np

from . import futex
from .errors import NotAllowedError, NotReadableError
from .fences import fence
from .frames import NS_PER_S
from .ring import SHM_DIR, Segment, _array, create_segment, open_segment
from .wire import Limits, bounded_unpack, nests_deeper

__all__ = [
    "DEFAULT_SLOTS",
    "MAX_RESULT_BYTES",
    "Result",
    "ResultsReader",
    "ResultsSegment",
    "ResultsWriter",
    "decode_result",
    "read_results_pids",
    "results_bytes",
]

MAGIC = int.from_bytes(b"MBRKRSLT", "little")
LAYOUT_VERSION = 1
KIND_RESULTS = 3  # after the video ring's 1 and the audio ring's 2
HEADER_BYTES = 256
SLOT_HEADER_BYTES = 64
MAX_RESULT_BYTES = 16 * 1024  # one result, packed
DEFAULT_SLOTS = 64  # [results] slots
MAX_SLOTS = 4096
STATE_LIVE, STATE_ENDED = 1, 2
# The slot header's words
W_BEGIN, W_END, W_CAPTURE_SEQ, W_CAPTURE_NS, W_LENGTH, W_WRITTEN_NS, W_SENT_NS = range(7)
SLOT_WORDS = SLOT_HEADER_BYTES // 8
# Decoding limits: a result is one map of at most MAX_RESULT_BYTES.
_LIMITS = Limits(MAX_RESULT_BYTES, MAX_RESULT_BYTES, MAX_RESULT_BYTES // 2, MAX_RESULT_BYTES)
MAX_DEPTH = 16
READ_TRIES = 16  # looks at the newest result before a reader gives up on this wake

HEADER = np.dtype(
    [
        ("magic", "<u8"),
        ("version", "<u4"),
        ("kind", "<u4"),
        ("owner_pid", "<u4"),
        ("writer_pid", "<u4"),
        ("state", "<u4"),
        ("slot_count", "<u4"),
        ("payload_bytes", "<u4"),
        ("reserved", "<u4"),
        ("slot_stride", "<u8"),
        ("newest", "<u8"),  # the newest complete result: the doorbell's futex word
    ]
)
assert HEADER.itemsize <= HEADER_BYTES
_NEWEST_OFFSET: int = HEADER.fields["newest"][1]  # type: ignore[index]


class Result(NamedTuple):
    """One result as subscribers get it: the camera frame it is about and
    the publisher's map."""

    captureSeq: int
    captureTimestamp: float  # CLOCK_MONOTONIC seconds, as VideoFrame.captureTimestamp
    data: dict[str, Any]


def _stride(payload_bytes: int) -> int:
    return (SLOT_HEADER_BYTES + payload_bytes + 63) // 64 * 64


def results_bytes(slots: int, payload_bytes: int = MAX_RESULT_BYTES) -> int:
    """The size in bytes of a results segment, header included."""
    return HEADER_BYTES + _stride(payload_bytes) * slots


def decode_result(payload: bytes) -> dict[str, Any]:
    """The map in ``payload``, decoded with strict limits. Raises ValueError
    (msgpack's errors are ValueErrors) for anything but a msgpack map of at
    most `MAX_RESULT_BYTES` nested at most `MAX_DEPTH` deep, keys str."""
    if len(payload) > MAX_RESULT_BYTES:
        raise ValueError(f"a result is at most {MAX_RESULT_BYTES} bytes packed, not {len(payload)}")
    try:
        data = bounded_unpack(payload, _LIMITS)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a msgpack result: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"a result is a map (a dict), not {type(data).__name__}")
    if nests_deeper(data, MAX_DEPTH):
        raise ValueError(f"a result nests deeper than {MAX_DEPTH} levels")
    return data


class ResultsSegment(Segment):
    """A mapped results segment: `create` (the daemon) or `open` (read-only).
    ``close()`` unmaps (idempotent); only the daemon calls `unlink`."""

    _views = ("header", "words", "payloads", "newest_word")

    def __init__(self, name: str, mapping: mmap.mmap, writable: bool) -> None:
        self.name, self.writable = name, writable
        snapshot = np.ndarray((), HEADER, buffer=mapping).copy()
        try:
            self.slot_count, self.payload_bytes = _parse_header(name, snapshot, len(mapping))
        except BaseException:
            mapping.close()
            raise
        self.stride = _stride(self.payload_bytes)
        self.header = _array(mapping, HEADER, ())
        starts = [HEADER_BYTES + index * self.stride for index in range(self.slot_count)]
        self.words = [_array(mapping, "<u8", (SLOT_WORDS,), start) for start in starts]
        self.payloads = [
            _array(mapping, np.uint8, (self.payload_bytes,), start + SLOT_HEADER_BYTES)
            for start in starts
        ]
        self.newest_word = _array(mapping, "<u8", (1,), _NEWEST_OFFSET)
        self._mmap = mapping

    @classmethod
    def create(
        cls,
        name: str,
        slots: int = DEFAULT_SLOTS,
        *,
        mode: int = 0o640,
        gid: int | None = None,
        shm_dir: Path = SHM_DIR,
    ) -> ResultsSegment:
        """Create, size and pre-fault a new segment. Raises `NotReadableError`
        when /dev/shm has no room, `FileExistsError` if the name is taken."""
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"a results ring has 1 to {MAX_SLOTS} slots, not {slots}")

        def wrap(mapping: mmap.mmap) -> ResultsSegment:
            _write_header(mapping, slots)
            return cls(name, mapping, writable=True)

        size = results_bytes(slots)
        return create_segment(name, size, wrap, mode=mode, gid=gid, shm_dir=shm_dir)

    @classmethod
    def open(cls, name: str, *, shm_dir: Path = SHM_DIR) -> ResultsSegment:
        """Map an existing segment read-only. Raises `NotReadableError` when it
        is missing or no results segment, `NotAllowedError` without access."""
        mapping = open_segment(name, "results ring", writable=False, shm_dir=shm_dir)
        return cls(name, mapping, writable=False)

    @property
    def ended(self) -> bool:
        return self._mmap is None or int(self.header["state"]) == STATE_ENDED

    @property
    def newest(self) -> int:
        return int(self.newest_word[0])

    @property
    def buffer(self) -> mmap.mmap:
        if self._mmap is None:
            raise ValueError(f"results ring {self.name!r} is closed")
        return self._mmap

    def wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until ``newest`` moves from ``seen`` (or the end, or the timeout)."""
        futex.wait(int(self.newest_word.ctypes.data), seen, timeout_s)

    def ring(self) -> None:
        futex.wake_all(int(self.newest_word.ctypes.data))

    def __repr__(self) -> str:
        if self._mmap is None:
            return f"<ResultsSegment {self.name!r} closed>"
        state = "ended" if self.ended else "live"
        return (
            f"<ResultsSegment {self.name!r} slots={self.slot_count} newest={self.newest} {state}>"
        )


def _parse_header(name: str, h: np.ndarray, mapped_bytes: int) -> tuple[int, int]:
    """(slots, payload bytes) from an untrusted header; raises `NotReadableError`."""
    if int(h["magic"]) != MAGIC or int(h["version"]) != LAYOUT_VERSION:
        raise NotReadableError(f"segment {name!r} is not a version {LAYOUT_VERSION} results ring")
    slots, payload = int(h["slot_count"]), int(h["payload_bytes"])
    if not 1 <= slots <= MAX_SLOTS or payload != MAX_RESULT_BYTES:
        raise NotReadableError(f"results ring {name!r} has an inconsistent header")
    if int(h["slot_stride"]) != _stride(payload) or results_bytes(slots, payload) > mapped_bytes:
        raise NotReadableError(f"results ring {name!r} has an inconsistent header")
    return slots, payload


def _write_header(mapping: mmap.mmap, slots: int) -> None:
    h = np.ndarray((), HEADER, buffer=mapping)
    h["magic"], h["version"], h["kind"] = MAGIC, LAYOUT_VERSION, KIND_RESULTS
    h["owner_pid"], h["writer_pid"], h["state"] = os.getpid(), os.getpid(), STATE_LIVE
    h["slot_count"], h["payload_bytes"] = slots, MAX_RESULT_BYTES
    h["slot_stride"] = _stride(MAX_RESULT_BYTES)


def read_results_pids(name: str, shm_dir: Path = SHM_DIR) -> tuple[int, int] | None:
    """(owner pid, writer pid) of a results segment, or None if it is none."""
    try:
        with ResultsSegment.open(name, shm_dir=shm_dir) as segment:
            return int(segment.header["owner_pid"]), int(segment.header["writer_pid"])
    except (NotReadableError, NotAllowedError, ValueError, OSError):
        return None


class ResultsWriter:
    """The daemon's side: stores results in turn. One writer per segment."""

    def __init__(self, segment: ResultsSegment) -> None:
        if not segment.writable:
            raise ValueError(f"{segment!r} is not writable")
        self.segment = segment
        self.count = 0

    def write(self, capture_seq: int, capture_ns: int, payload: bytes, sent_ns: int) -> int:
        """Store one result (``payload``: packed, already checked) and wake the
        readers; returns its number (1, 2, ...)."""
        segment = self.segment
        k = self.count + 1
        index = (k - 1) % segment.slot_count
        words = segment.words[index]
        words[W_BEGIN] = k
        fence()
        words[W_CAPTURE_SEQ], words[W_CAPTURE_NS], words[W_LENGTH] = (
            capture_seq,
            capture_ns,
            len(payload),
        )
        words[W_WRITTEN_NS], words[W_SENT_NS] = time.monotonic_ns(), sent_ns
        segment.payloads[index][: len(payload)] = np.frombuffer(payload, np.uint8)
        fence()
        words[W_END] = k
        fence()
        segment.newest_word[0] = k
        self.count = k
        segment.ring()
        return k

    def end(self) -> None:
        """Mark the channel ended and wake every reader (before the unlink)."""
        self.segment.header["state"] = STATE_ENDED
        fence()
        self.segment.ring()


@dataclass(slots=True)
class _Slot:
    number: int
    capture_seq: int
    capture_ns: int
    sent_ns: int
    payload: bytes


class ResultsReader:
    """Reads a results segment newest first, counting what it skipped.
    ``delivered`` and ``skipped`` count results; not thread-safe."""

    def __init__(self, segment: ResultsSegment) -> None:
        self.segment = segment
        newest = segment.newest
        self.last = max(0, newest - 1)  # the current newest is the first read's
        self.delivered = 0
        self.skipped = 0

    def take_newest(self) -> Result | None:
        """The newest result not yet taken, or None when there is none (or
        its slot keeps failing the seqlock: a reader this far behind retries
        a few times, then waits for the next result)."""
        for _ in range(READ_TRIES):
            newest = self.segment.newest
            if newest <= self.last:
                return None
            fence()
            slot = self._slot(newest)
            if slot is None:
                continue  # overwritten as we read: look at the newest again
            self.skipped += newest - self.last - 1
            self.delivered += 1
            self.last = newest
            return _result(slot)
        return None

    def find(self, capture_seq: int, capture_ns: int | None = None) -> Result | None:
        """The newest result stored for frame ``capture_seq`` (captured at
        ``capture_ns``, when given: a camera re-opened in another mode
        numbers its frames from 0 again), or None."""
        segment = self.segment
        newest = segment.newest
        fence()
        for k in range(newest, max(0, newest - segment.slot_count), -1):
            index = (k - 1) % segment.slot_count
            if int(segment.words[index][W_CAPTURE_SEQ]) != capture_seq:
                continue
            slot = self._slot(k)
            if slot is None or slot.capture_seq != capture_seq:
                continue
            if capture_ns is None or slot.capture_ns == capture_ns:
                return _result(slot)
        return None

    def _slot(self, k: int) -> _Slot | None:
        """Result ``k`` copied out, or None when its slot no longer holds it."""
        segment = self.segment
        index = (k - 1) % segment.slot_count
        words = segment.words[index]
        if int(words[W_BEGIN]) != k or int(words[W_END]) != k:
            return None
        fence()
        length = int(words[W_LENGTH])
        seq, ns, sent = int(words[W_CAPTURE_SEQ]), int(words[W_CAPTURE_NS]), int(words[W_SENT_NS])
        if length > segment.payload_bytes:
            return None
        payload = segment.payloads[index][:length].tobytes()
        fence()
        if int(words[W_BEGIN]) != k:
            return None
        return _Slot(k, seq, ns, sent, payload)


def _result(slot: _Slot) -> Result:
    try:
        data = decode_result(slot.payload)
    except ValueError as exc:  # the daemon checked it: a broken daemon or segment
        raise NotReadableError(f"result {slot.number} is not a valid result: {exc}") from exc
    return Result(slot.capture_seq, slot.capture_ns / NS_PER_S, data)
