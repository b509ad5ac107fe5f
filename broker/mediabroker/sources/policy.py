"""The supervisor's two decisions, kept pure: when a crashed capture process
starts again, and when a running one has stopped delivering.

Design note. Neither reads a clock or touches a process: both take the time
(``now``, `time.monotonic` seconds) as an argument and only answer, the way
uvicorn keeps its process handle apart from its restart policy. `Source`
owns the clock, the ring and the `CaptureProcess`, and acts on the answer.
So the rules get unit tests of their own, and their settings live in
`BrokerConfig` (``restart_policy``, ``stall_s``), where a test can shrink them.
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "STALL_S",
    "Backoff",
    "CrashHistory",
    "Progress",
    "RestartPolicy",
    "StallWatch",
    "stall_limit_s",
]

STALL_S = 2.0  # the least a live source's ring may stand still before its process is killed
STALL_FRAMES = 3  # at slow rates: this many frame periods without a frame


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a capture process that died starts again, and when its source
    gives up instead.

    The n-th crash within the last ``window_s`` seconds waits ``backoff_s[n-1]``
    seconds (the last step for every crash after the table's end); the
    ``max_crashes``-th within the window ends the source. Crashes older than
    the window are forgotten.
    """

    max_crashes: int = 5
    window_s: float = 30.0
    backoff_s: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        if self.max_crashes < 1:
            raise ValueError(f"max_crashes is {self.max_crashes}; it must be at least 1")
        if self.window_s <= 0:
            raise ValueError(f"window_s is {self.window_s:g}; it must be positive")
        if not self.backoff_s or min(self.backoff_s) < 0:
            raise ValueError(f"backoff_s {self.backoff_s!r} must hold delays of 0 s or more")

    def recent(self, crashes: Iterable[float], now: float) -> int:
        """How many of the ``crashes`` (their times) fall within the window before ``now``."""
        return sum(1 for crashed_at in crashes if now - crashed_at < self.window_s)

    def next_delay(self, crashes: Sequence[float], now: float) -> float | None:
        """Seconds to wait before starting the capture process again, given the
        times of its crashes so far (the one that just happened included);
        None: end the source."""
        count = self.recent(crashes, now)
        if count >= self.max_crashes:
            return None
        step = min(max(count, 1), len(self.backoff_s))
        return self.backoff_s[step - 1]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays that never give up: ``first_s``, doubling up to ``max_s``,
    each spread by up to ``jitter`` (a fraction) so that cameras behind one
    dead switch do not all retry on the same tick. For sources whose outage
    is outside us (a network camera, a file not there yet), unlike
    `RestartPolicy`, which ends a source whose process keeps crashing."""

    first_s: float = 0.5
    max_s: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"backoff from {self.first_s:g} s to {self.max_s:g} s is no range")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter {self.jitter:g} must be from 0 up to 1")

    def delay(self, failures: int, rand: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 on);
        ``rand`` in [0, 1) makes the jitter (default: random)."""
        base = min(self.max_s, self.first_s * 2.0 ** max(failures - 1, 0))
        spread = random.random() if rand is None else rand  # not for secrets
        return base * (1 - self.jitter * spread)


class CrashHistory:
    """One source's crashes, and what follows the next one: a restart after
    a delay, or the end (None).

    A reconnecting source (a network camera: the outage is outside us)
    waits `Backoff` delays, counted since it last delivered, and never ends;
    any other follows `RestartPolicy` over its window. It also remembers the
    failure last logged, so that one repeated is not logged again.
    """

    def __init__(self, policy: RestartPolicy, backoff: Backoff) -> None:
        self._policy = policy
        self._backoff = backoff
        self._times: collections.deque[float] = collections.deque(
            maxlen=policy.max_crashes  # older ones cannot end the source
        )
        self._in_a_row = 0
        self._told = ""

    def is_news(self, reason: str) -> bool:
        """Whether ``reason`` differs from the failure told last (then it is told)."""
        news, self._told = reason != self._told, reason
        return news

    def next_delay(self, now: float, *, reconnecting: bool) -> float | None:
        """Seconds to wait before the next start after a crash at ``now``; None: end."""
        self._in_a_row += 1
        if reconnecting:
            return self._backoff.delay(self._in_a_row)
        self._times.append(now)
        return self._policy.next_delay(self._times, now)

    def give_up(self, reason: str, now: float) -> str:
        """Why the source ends, for its tracks' ``ended``."""
        count, window = self._policy.recent(self._times, now), self._policy.window_s
        return f"capture failed {count} times in {window:g} s; last: {reason}"

    def recovered(self) -> bool:
        """It delivers again: the next crash starts a fresh backoff. Returns
        whether a failure had been told (so its recovery is worth a line)."""
        told, self._told, self._in_a_row = bool(self._told), "", 0
        return told


def stall_limit_s(frame_rate: float, least_s: float = STALL_S) -> float:
    """How long a live source's ring may stand still: ``least_s``, or
    `STALL_FRAMES` frame periods where frames come slower than that (3 s at
    1 fps). Audio (``frame_rate`` 0) paces itself: ``least_s``."""
    if frame_rate <= 0:
        return least_s
    return max(least_s, STALL_FRAMES / frame_rate)


class Progress(enum.Enum):
    """`StallWatch.check`'s answer; the value words the failure for the log."""

    OK = "ok"
    STALLED = "delivered nothing"  # live, and the ring stood still past the stall limit
    NOT_READY = "did not get ready"  # not live, and no first frame within the start timeout


class StallWatch:
    """Whether one source's capture process still delivers.

    Fed the ring's newest position and the time, twice a second, it answers
    `Progress.STALLED` when a live source's ring has not moved for
    ``limit_s`` (`stall_limit_s`), and `Progress.NOT_READY` when a source that
    is not live has not moved for ``start_timeout_s``: the caller then kills
    the process. `restart` starts the clock afresh for a new process.
    """

    __slots__ = ("_position", "_since", "limit_s", "start_timeout_s")

    def __init__(
        self, frame_rate: float, start_timeout_s: float, now: float, least_s: float = STALL_S
    ) -> None:
        self.limit_s = stall_limit_s(frame_rate, least_s)
        self.start_timeout_s = start_timeout_s
        self._position, self._since = -1, now

    def restart(self, now: float) -> None:
        """A new capture process: it has from ``now`` to get ready."""
        self._position, self._since = -1, now

    def check(self, position: int, now: float, *, live: bool, waiting: bool = False) -> Progress:
        """The verdict at ``now`` for a ring whose newest position is
        ``position``. ``live``: the source has delivered since its process
        (re)started. ``waiting``: it reads a parent that is not live, and
        waiting on a muted parent is no stall (the clock is held)."""
        if waiting:
            self._since = now
            return Progress.OK
        if position != self._position:
            self._position, self._since = position, now
            return Progress.OK
        limit = self.limit_s if live else self.start_timeout_s
        if now - self._since <= limit:
            return Progress.OK
        return Progress.STALLED if live else Progress.NOT_READY

    def quiet_s(self, now: float) -> float:
        """Seconds since the ring last moved (or the clock last started)."""
        return now - self._since

    def __repr__(self) -> str:
        return f"<StallWatch limit={self.limit_s:g}s start={self.start_timeout_s:g}s>"
