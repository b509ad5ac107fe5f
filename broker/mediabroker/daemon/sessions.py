"""Client sessions: one per control connection that said hello, with the
credentials the kernel recorded when that connection was made.

A session ends with its connection (the client closed it, or its process
exited and the kernel closed it), with ``bye``, with a second ``hello`` on
the same connection, or when its heartbeats stop (`reap_sessions`; the
daemon then closes the connection, so the client knows).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mediabroker.daemon.zmtp import Connection, PeerCredentials

if TYPE_CHECKING:
    from mediabroker.sources import Source

__all__ = ["Session", "SessionTable", "reap_sessions"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Session:
    connection: Connection
    name: str
    started: float
    last_seen: float
    tracks: set[str] = field(default_factory=set)
    delivered: int | None = None  # frames its tracks read, as its heartbeats say
    discarded: int | None = None  # frames its tracks skipped
    unknown_names: set[str] = field(default_factory=set)  # constraint names logged once
    doorbell: int | None = None  # its process's FIFO (write end), rung for each frame
    rung_by: set[Source] = field(default_factory=set)  # the sources that ring it

    @property
    def identity(self) -> bytes:
        return self.connection.id

    @property
    def peer(self) -> PeerCredentials:
        return self.connection.peer

    def __repr__(self) -> str:
        peer = self.peer
        return f"<Session {self.name!r} pid={peer.pid} uid={peer.uid} tracks={len(self.tracks)}>"


class SessionTable:
    """The open sessions, by their connection's id."""

    def __init__(self) -> None:
        self._by_identity: dict[bytes, Session] = {}

    def __len__(self) -> int:
        return len(self._by_identity)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_identity.values()))

    def get(self, identity: bytes) -> Session | None:
        return self._by_identity.get(identity)

    def of_uid(self, uid: int) -> list[Session]:
        return [s for s in self._by_identity.values() if s.peer.uid == uid]

    def open(self, connection: Connection, name: str) -> Session:
        now = time.monotonic()
        session = Session(connection, name, now, now)
        self._by_identity[connection.id] = session
        log.info("session opened: %r", session)
        return session

    def close(self, session: Session, reason: str) -> None:
        """Forget ``session``; the log line counts the tracks it still held."""
        if self._by_identity.pop(session.identity, None) is not None:
            log.info("session closed (%s): %r", reason, session)

    def expired(self, timeout_s: float) -> list[tuple[Session, str]]:
        """Sessions whose heartbeats stopped, with why."""
        deadline = time.monotonic() - timeout_s
        return [
            (session, f"no heartbeat for {timeout_s:g} s")
            for session in self._by_identity.values()
            if session.last_seen < deadline
        ]


async def reap_sessions(
    sessions: SessionTable,
    heartbeat_s: float,
    timeout_s: float,
    end: Callable[[Session, str], None],
) -> None:
    """End sessions whose heartbeats stopped (runs until cancelled)."""
    period = heartbeat_s / 2
    while True:
        started = time.monotonic()
        await asyncio.sleep(period)
        # Woken late, the loop itself was stalled: heartbeats may still sit
        # unread in the socket, so silence says nothing about the clients.
        stalled = time.monotonic() - started > period + heartbeat_s
        for session, reason in sessions.expired(math.inf if stalled else timeout_s):
            end(session, reason)
