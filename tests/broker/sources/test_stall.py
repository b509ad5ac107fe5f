"""StallWatch, pure: when a capture process has stopped delivering or never got ready."""

from __future__ import annotations

import pytest

from mediabroker.sources.policy import Progress, StallWatch, stall_limit_s

START_TIMEOUT_S = 10.0


def test_a_live_source_whose_ring_stands_still_for_the_limit_is_stalled() -> None:
    watch = StallWatch(30.0, START_TIMEOUT_S, now=0.0)
    assert watch.check(7, 0.5, live=True) is Progress.OK  # the ring moved: the clock starts
    assert watch.check(7, 2.5, live=True) is Progress.OK  # 2.0 s: at the limit, not past it
    assert watch.check(7, 2.6, live=True) is Progress.STALLED
    assert watch.quiet_s(2.6) == pytest.approx(2.1)


def test_a_ring_that_moves_never_stalls() -> None:
    watch = StallWatch(30.0, START_TIMEOUT_S, now=0.0)
    for step in range(100):
        assert watch.check(step, step * 1.5, live=True) is Progress.OK


def test_a_source_waiting_on_a_muted_parent_is_not_stalled() -> None:
    """Its clock is held while it waits, and runs again from the end of the wait."""
    watch = StallWatch(30.0, START_TIMEOUT_S, now=0.0)
    watch.check(7, 0.0, live=True)
    for now in (1.0, 5.0, 60.0):
        assert watch.check(7, now, live=True, waiting=True) is Progress.OK
    assert watch.check(7, 61.9, live=True) is Progress.OK
    assert watch.check(7, 62.1, live=True) is Progress.STALLED


def test_a_source_not_ready_within_the_start_timeout_is_reported_as_such() -> None:
    watch = StallWatch(30.0, START_TIMEOUT_S, now=100.0)
    assert watch.check(-1, 100.5, live=False) is Progress.OK
    assert watch.check(-1, 105.0, live=False) is Progress.OK  # past the stall limit: not live yet
    assert watch.check(-1, 110.6, live=False) is Progress.NOT_READY
    assert Progress.NOT_READY.value == "did not get ready"


def test_restart_gives_a_new_process_the_whole_start_timeout() -> None:
    watch = StallWatch(30.0, START_TIMEOUT_S, now=0.0)
    watch.check(7, 0.0, live=True)
    watch.restart(50.0)
    assert watch.check(7, 59.0, live=False) is Progress.OK  # -1 -> 7 counts as a move
    assert watch.check(7, 68.9, live=False) is Progress.OK
    assert watch.check(7, 69.1, live=False) is Progress.NOT_READY


def test_the_limit_at_1_fps_is_3_s() -> None:
    assert stall_limit_s(1.0) == 3.0
    watch = StallWatch(1.0, START_TIMEOUT_S, now=0.0)
    watch.check(3, 0.0, live=True)
    assert watch.check(3, 2.9, live=True) is Progress.OK
    assert watch.check(3, 3.1, live=True) is Progress.STALLED


@pytest.mark.parametrize(
    ("frame_rate", "least_s", "limit_s"),
    [(30.0, 2.0, 2.0), (0.5, 2.0, 6.0), (0.0, 2.0, 2.0), (30.0, 0.2, 0.2), (5.0, 0.2, 0.6)],
)
def test_the_limit_is_the_least_or_three_frame_periods(
    frame_rate: float, least_s: float, limit_s: float
) -> None:
    """Audio (rate 0) paces itself: the least limit."""
    assert stall_limit_s(frame_rate, least_s) == pytest.approx(limit_s)
    assert StallWatch(frame_rate, START_TIMEOUT_S, 0.0, least_s).limit_s == pytest.approx(limit_s)
