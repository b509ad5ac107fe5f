"""The status inbox: one PULL socket that every capture process reports to.

A capture process PUSHes ``ready`` after its first frame, its backend's
``counters`` once a second, ``failed`` with a reason before it exits with
an error, and ``ended`` at the end of its stream (`mediabroker.capture.main`
sends them; `decode_status` lives there, next to the encoder). The senders
are our own children, so the messages are trusted; `StatusInbox.serve`
types each one and hands it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from mediabroker.capture.main import decode_status
from mediastream.paths import CAPTURE_STATUS, endpoint

__all__ = ["CaptureStatus", "StatusInbox"]


@dataclass(frozen=True, slots=True)
class CaptureStatus:
    """One message from a capture process."""

    source_id: str
    event: str  # "ready", "counters", "failed" or "ended"
    reason: str = ""
    pid: int | None = None  # the sender's
    counters: dict[str, float] = field(default_factory=dict)  # the backend's, if any

    @classmethod
    def decode(cls, data: bytes) -> CaptureStatus:
        message = decode_status(data)
        pid = message.get("pid")
        return cls(
            str(message.get("source")),
            str(message.get("event")),
            str(message.get("reason", "")),
            pid if isinstance(pid, int) else None,
            dict(message.get("counters") or {}),
        )


MAX_STATUS_BYTES = 64 * 1024


class StatusInbox:
    """The PULL socket at ``run_dir``'s capture-status endpoint."""

    def __init__(self, ctx: zmq.asyncio.Context, run_dir: Path) -> None:
        self.endpoint = endpoint(run_dir, CAPTURE_STATUS)
        self._socket = ctx.socket(zmq.PULL)
        # Only our own capture processes can connect (0600), and their reports
        # are small; a limit all the same, as on every socket the daemon owns.
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_STATUS_BYTES)  # before bind

    def bind(self) -> None:
        """Listen; before any source starts."""
        self._socket.bind(self.endpoint)

    async def serve(self, deliver: Callable[[CaptureStatus], None]) -> None:
        """Hand every message to ``deliver``, in order (runs until cancelled)."""
        while True:
            deliver(CaptureStatus.decode(await self._socket.recv()))

    def close(self) -> None:
        self._socket.close(linger=0)
