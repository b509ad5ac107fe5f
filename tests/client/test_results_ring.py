"""mediastream.results: the results ring's layout, seqlock, skips, lookup
and end, on real segments in /dev/shm (no daemon)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import msgpack
import pytest

from mediastream.errors import NotReadableError
from mediastream.results import (
    MAX_RESULT_BYTES,
    W_BEGIN,
    ResultsReader,
    ResultsSegment,
    ResultsWriter,
    decode_result,
    read_results_pids,
    results_bytes,
)
from mediastream.ring import SHM_DIR, Ring
from support import unique_prefix

SLOTS = 8


@pytest.fixture
def segment() -> Iterator[ResultsSegment]:
    name = unique_prefix() + "results.test"
    made = ResultsSegment.create(name, SLOTS)
    try:
        yield made
    finally:
        made.close()
        ResultsSegment.unlink(name)


def pack(data: object) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def test_layout_mode_and_size(segment: ResultsSegment) -> None:
    info = os.stat(SHM_DIR / segment.name)
    assert info.st_mode & 0o777 == 0o640
    assert info.st_size == results_bytes(SLOTS) == 256 + SLOTS * (64 + MAX_RESULT_BYTES)
    assert read_results_pids(segment.name) == (os.getpid(), os.getpid())
    with pytest.raises(NotReadableError):
        Ring.open(segment.name)  # not a video or audio ring: refused, not misread


def test_newest_first_with_skips_counted(segment: ResultsSegment) -> None:
    writer = ResultsWriter(segment)
    with ResultsSegment.open(segment.name) as mapped:
        reader = ResultsReader(mapped)
        assert reader.take_newest() is None
        writer.write(10, 1_500_000_000, pack({"n": 10}), 0)
        assert reader.take_newest() == (10, 1.5, {"n": 10})
        for seq in range(11, 16):
            writer.write(seq, seq * 1_000_000_000, pack({"n": seq}), 0)
        newest = reader.take_newest()
        assert newest is not None and newest.captureSeq == 15 and newest.data == {"n": 15}
        assert (reader.delivered, reader.skipped) == (2, 4)
        assert reader.take_newest() is None


def test_a_late_reader_starts_at_the_newest_and_skips_nothing_before(
    segment: ResultsSegment,
) -> None:
    writer = ResultsWriter(segment)
    for seq in range(100):
        writer.write(seq, seq, pack({"n": seq}), 0)
    with ResultsSegment.open(segment.name) as mapped:
        reader = ResultsReader(mapped)
        first = reader.take_newest()
        assert first is not None and first.captureSeq == 99
        assert reader.skipped == 0


def test_find_by_capture_seq_and_time(segment: ResultsSegment) -> None:
    """The newest result for a frame among the last SLOTS; with the capture
    time too, a frame numbered again after a camera re-open is told apart."""
    writer = ResultsWriter(segment)
    writer.write(5, 1000, pack({"old": True}), 0)
    writer.write(5, 2000, pack({"new": True}), 0)
    with ResultsSegment.open(segment.name) as mapped:
        reader = ResultsReader(mapped)
        found = reader.find(5)
        assert found is not None and found.data == {"new": True}
        found = reader.find(5, 1000)
        assert found is not None and found.data == {"old": True}
        assert reader.find(6) is None
        for seq in range(6, 6 + SLOTS):
            writer.write(seq, seq, pack({}), 0)
        assert reader.find(5) is None  # overwritten: gone, never wrong


def test_a_torn_slot_is_never_returned(segment: ResultsSegment) -> None:
    writer = ResultsWriter(segment)
    writer.write(1, 1, pack({"a": 1}), 0)
    with ResultsSegment.open(segment.name) as mapped:
        reader = ResultsReader(mapped)
        segment.words[0][W_BEGIN] = 2  # the writer began result 2 in slot 0
        assert reader.find(1) is None
        assert reader.take_newest() is None
        assert reader.delivered == 0


def test_end_wakes_a_waiting_reader(segment: ResultsSegment) -> None:
    writer = ResultsWriter(segment)
    with ResultsSegment.open(segment.name) as mapped:
        woke: list[float] = []

        def wait() -> None:
            started = time.monotonic()
            mapped.wait(mapped.newest, 10.0)
            woke.append(time.monotonic() - started)

        thread = threading.Thread(target=wait)
        thread.start()
        while not woke and thread.is_alive():
            writer.end()  # repeated until the waiter was asleep when it came
            thread.join(0.01)
        assert mapped.ended and woke and woke[0] < 5


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (pack([1, 2]), "map"),
        (b"\xc1", "msgpack"),
        (pack({1: "x"}), "msgpack"),
        (pack({"x": b"\0" * MAX_RESULT_BYTES}), "at most"),
        (pack({"a": 1}) + b"\0", "msgpack"),
    ],
)
def test_decode_refuses_what_is_no_small_map(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_result(payload)


def test_decode_refuses_deep_nesting() -> None:
    deep: object = {}
    for _ in range(20):
        deep = {"d": deep}
    with pytest.raises(ValueError, match="deeper"):
        decode_result(pack(deep))


def test_a_header_that_lies_is_refused(segment: ResultsSegment) -> None:
    segment.header["slot_count"] = 10_000
    with pytest.raises(NotReadableError, match="inconsistent"):
        ResultsSegment.open(segment.name)
    segment.header["slot_count"] = SLOTS
