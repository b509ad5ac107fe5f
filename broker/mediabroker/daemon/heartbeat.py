"""The daemon's pulse: a heartbeat to every control connection, systemd's
watchdog and its STATUS= line.

Clients end their tracks when the heartbeat goes quiet (the daemon died or
hangs); systemd restarts a daemon whose watchdog goes quiet. Both are fed
from the one loop, so either stops exactly when the loop stops.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable

from mediabroker.daemon.systemd import SystemdNotifier

__all__ = ["Heartbeat"]


class Heartbeat:
    """``status_line()`` says what the daemon holds; ``broadcast`` sends the beat."""

    def __init__(
        self,
        broadcast: Callable[..., None],
        notifier: SystemdNotifier,
        status_line: Callable[[], str],
    ) -> None:
        self._broadcast = broadcast
        self._notifier = notifier
        self._status_line = status_line

    async def run(self, heartbeat_s: float) -> None:
        """Beat every ``heartbeat_s`` (or the watchdog's interval, if shorter)
        until cancelled; STATUS= goes out when the line changes."""
        watchdog_s = self._notifier.watchdog_interval_s
        interval = min(heartbeat_s, watchdog_s or math.inf)
        status = ""
        while True:
            self._broadcast("broker", "heartbeat", pid=os.getpid())
            if watchdog_s is not None:
                self._notifier.watchdog()
            if (line := self._status_line()) != status:
                status = line
                self._notifier.status(status)
            await asyncio.sleep(interval)
