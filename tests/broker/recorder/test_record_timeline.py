"""`mediabroker.recorder.timeline`: frames placed on the file's grid."""

from __future__ import annotations

from mediabroker.recorder.timeline import Placement, Timeline

FPS = 30.0
PERIOD_S = 1 / FPS


def test_frames_on_time_are_written_once() -> None:
    timeline = Timeline(FPS)
    for n in range(10):
        jitter = 0.004 if n % 2 else -0.004  # well inside half a period
        assert timeline.place(100.0 + n * PERIOD_S + jitter * (n > 0), n + 1) == Placement(0, True)
    assert (timeline.slots, timeline.repeated, timeline.dropped) == (10, 0, 0)
    assert abs(timeline.seconds - 10 / 30) < 1e-9


def test_frames_the_reader_missed_become_repeats_and_drops() -> None:
    """Frames 2 to 4 were never read: their slots repeat frame 1, and the
    three frames count as dropped."""
    timeline = Timeline(FPS)
    timeline.place(0.0, 1)
    assert timeline.place(4 * PERIOD_S, 5) == Placement(3, True)
    assert (timeline.slots, timeline.repeated, timeline.dropped) == (5, 3, 3)


def test_a_late_camera_is_repeated_an_early_frame_dropped() -> None:
    """1. A frame 2.6 periods late (no gap in seq: the camera was slow)
    fills two repeats. 2. A second frame for a slot already written (a
    camera faster than the file) is dropped."""
    timeline = Timeline(FPS)
    timeline.place(0.0, 1)
    assert timeline.place(2.6 * PERIOD_S, 2) == Placement(2, True)
    assert timeline.place(2.9 * PERIOD_S, 3) == Placement(0, False)
    assert (timeline.slots, timeline.repeated, timeline.dropped) == (4, 2, 1)


def test_the_limit_stops_at_exactly_that_many_frames() -> None:
    timeline = Timeline(FPS, limit=5)
    timeline.place(0.0, 1)
    assert timeline.place(10 * PERIOD_S, 2) == Placement(4, False)  # repeats fill it up
    assert timeline.full and timeline.slots == 5


def test_a_new_ring_restarting_seq_misses_nothing() -> None:
    """applyConstraints moved the track to another source: seq starts again."""
    timeline = Timeline(FPS)
    timeline.place(0.0, 500)
    timeline.place(PERIOD_S, 1)
    assert timeline.dropped == 0
