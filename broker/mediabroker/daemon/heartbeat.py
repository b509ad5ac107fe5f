"""The daemon's pulse: a heartbeat on the events socket, systemd's watchdog
and its STATUS= line.

Clients end their tracks when the heartbeat goes quiet (the daemon died or
hangs); systemd restarts a daemon whose watchdog goes quiet. Both are fed
from the one loop, so either stops exactly when the loop stops.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from mediabroker.daemon.control import SHUTDOWN_LINGER_MS
from mediabroker.daemon.systemd import SystemdNotifier
from mediastream import wire
from mediastream.paths import events_endpoint

__all__ = ["Heartbeat"]


class Heartbeat:
    """Owns the events PUB socket. ``status_line()`` says what the daemon holds."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        notifier: SystemdNotifier,
        status_line: Callable[[], str],
    ) -> None:
        self._ctx = ctx
        self._notifier = notifier
        self._status_line = status_line
        self._socket: zmq.asyncio.Socket | None = None

    def bind(self, run_dir: Path) -> None:
        socket = self._ctx.socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_SUBSCRIPTION_BYTES)  # before bind
        socket.bind(events_endpoint(run_dir))
        self._socket = socket

    def publish(self, topic: str, event_type: str, **fields: Any) -> None:
        if self._socket is not None:
            self._socket.send_multipart(wire.encode_event(topic, event_type, **fields))

    async def run(self, heartbeat_s: float) -> None:
        """Beat every ``heartbeat_s`` (or the watchdog's interval, if shorter)
        until cancelled; STATUS= goes out when the line changes."""
        watchdog_s = self._notifier.watchdog_interval_s
        interval = min(heartbeat_s, watchdog_s or math.inf)
        status = ""
        while True:
            self.publish("broker", "heartbeat", pid=os.getpid())
            if watchdog_s is not None:
                self._notifier.watchdog()
            if (line := self._status_line()) != status:
                status = line
                self._notifier.status(status)
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=SHUTDOWN_LINGER_MS)
