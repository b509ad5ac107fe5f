"""Restart rules, pure: which crash ends a source, how long each restart waits."""

from __future__ import annotations

import pytest

from mediabroker.config import BrokerConfig
from mediabroker.sources.policy import Backoff, CrashHistory, RestartPolicy


def test_the_fifth_crash_within_the_window_ends_the_source() -> None:
    assert RestartPolicy().next_delay([0, 1, 2, 3, 4], now=5) is None


def test_the_fourth_crash_within_the_window_restarts() -> None:
    assert RestartPolicy().next_delay([0, 1, 2, 3], now=4) == 1.0


def test_crashes_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy()
    assert policy.recent([0, 1, 2, 3, 40], now=40) == 1
    assert policy.next_delay([0, 1, 2, 3, 40], now=40) == 0.1  # a first crash again
    assert policy.next_delay([0, 10, 30], now=30) == 0.2  # 0 is 30 s ago: just out


def test_backoff_grows_then_stays_at_its_last_step() -> None:
    policy = RestartPolicy(max_crashes=9)
    crashes: list[float] = []
    delays = []
    for now in range(8):
        crashes.append(now)
        delays.append(policy.next_delay(crashes, now))
    assert delays == [0.1, 0.2, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert policy.next_delay([*crashes, 8], 8) is None


def test_a_shrunk_policy_ends_at_the_first_crash() -> None:
    policy = RestartPolicy(max_crashes=1, window_s=0.5, backoff_s=(0.01,))
    assert policy.next_delay([10.0], now=10.0) is None
    assert RestartPolicy(max_crashes=2, backoff_s=(0.01,)).next_delay([10.0], 10.0) == 0.01


def test_the_policy_is_part_of_the_configuration() -> None:
    assert BrokerConfig().restart_policy == RestartPolicy()
    shrunk = BrokerConfig(restart_policy=RestartPolicy(max_crashes=2), stall_s=0.2)
    assert shrunk.restart_policy.max_crashes == 2 and shrunk.stall_s == 0.2


@pytest.mark.parametrize(
    "fields",
    [{"max_crashes": 0}, {"window_s": 0.0}, {"backoff_s": ()}, {"backoff_s": (0.1, -1.0)}],
)
def test_a_policy_that_could_not_work_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**fields)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(first_s=0.5, max_s=10.0, jitter=0.1)
    assert [backoff.delay(n, rand=0.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert backoff.delay(1, rand=0.999) == pytest.approx(0.45, abs=0.001)
    assert all(0.45 <= backoff.delay(1) <= 0.5 for _ in range(100))
    with pytest.raises(ValueError, match="no range"):
        Backoff(first_s=2, max_s=1)


def test_a_reconnecting_source_never_gives_up_and_starts_afresh_after_a_frame() -> None:
    """1. Crashes of a reconnecting source back off and never end it, however many.
    2. A repeated failure is no news; after `recovered` the backoff starts again."""
    history = CrashHistory(RestartPolicy(max_crashes=2), Backoff(0.5, 10.0, jitter=0))
    delays = [history.next_delay(float(t), reconnecting=True) for t in range(8)]
    assert delays == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert history.is_news("the stream stopped") and not history.is_news("the stream stopped")
    assert history.recovered() and not history.recovered()
    assert history.next_delay(9.0, reconnecting=True) == 0.5
    assert history.is_news("the stream stopped")


def test_a_capture_process_that_keeps_crashing_still_ends_its_source() -> None:
    history = CrashHistory(RestartPolicy(max_crashes=2, backoff_s=(0.1,)), Backoff())
    assert history.next_delay(0.0, reconnecting=False) == 0.1
    assert history.next_delay(1.0, reconnecting=False) is None
    assert history.give_up("boom", 1.0) == "capture failed 2 times in 30 s; last: boom"
