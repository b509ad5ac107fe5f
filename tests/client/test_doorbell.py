"""The ring's doorbell: a futex on its newest word (mediastream.futex)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mediastream.ring import Doorbell, Ring, VideoFormat, VideoWriter
from support import unique_prefix


@pytest.fixture
def ring() -> Iterator[Ring]:
    ring = Ring.create(unique_prefix() + "doorbell", VideoFormat(16, 8), 3)
    try:
        yield ring
    finally:
        ring.close()
        Ring.unlink(ring.name)


def waiter(doorbell: Doorbell, seen: int, timeout_s: float) -> threading.Thread:
    thread = threading.Thread(target=doorbell.wait, args=(seen, timeout_s), daemon=True)
    thread.start()
    return thread


def test_a_commit_wakes_a_reader_waiting_on_the_value_it_saw(ring: Ring) -> None:
    """The waiter sleeps (30 s timeout) until the writer commits a frame."""
    writer, doorbell = VideoWriter(ring), Doorbell(ring)
    seen = doorbell.value()
    thread = waiter(doorbell, seen, 30.0)
    thread.join(0.2)
    assert thread.is_alive(), "the wait returned with nothing new"
    writer.begin()
    writer.commit(time.monotonic_ns(), time.time_ns())
    thread.join(5.0)
    assert not thread.is_alive(), "the commit did not wake the waiter"
    assert doorbell.value() == seen + 1


def test_a_value_already_gone_returns_at_once(ring: Ring) -> None:
    """A frame published between the look and the wait is never slept through."""
    writer, doorbell = VideoWriter(ring), Doorbell(ring)
    seen = doorbell.value()
    writer.begin()
    writer.commit(time.monotonic_ns(), time.time_ns())
    thread = waiter(doorbell, seen, 30.0)
    thread.join(5.0)
    assert not thread.is_alive(), "slept although the word had moved"


def test_a_wait_ends_at_its_timeout(ring: Ring) -> None:
    doorbell = Doorbell(ring)
    thread = waiter(doorbell, doorbell.value(), 0.1)
    thread.join(5.0)
    assert not thread.is_alive(), "the timeout did not end the wait"
