"""SIGTERM and SIGINT as a request to stop recording.

A service manager stops with SIGTERM, a terminal with Ctrl-C (SIGINT):
either way the recorder finishes the frame in hand, closes the file (an MP4
gets its index) and exits 0. The handler only records the signal; the
recording loop acts on it. It also puts the previous handlers back, so a
second signal acts as it would have without us: a second Ctrl-C raises
`KeyboardInterrupt`, a second SIGTERM kills. On leaving the block the
previous handlers come back in any case.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """``with StopSignals() as stop:`` ... ``stop.requested`` is the name of
    the first stop signal received ("SIGTERM"), else None. Main thread only."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"<StopSignals requested={self.requested}>"

    def __enter__(self) -> StopSignals:
        for number in STOP_SIGNALS:
            if signal.getsignal(number) is not signal.SIG_IGN:  # nohup, a background job
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signal.Signals(number).name
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
