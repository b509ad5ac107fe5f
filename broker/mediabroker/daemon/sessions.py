"""Client sessions: who is connected, with the credentials the kernel vouches for."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psutil

from mediastream.errors import ProtocolError

__all__ = ["PeerCredentials", "Session", "SessionTable", "parse_peer_address", "reap_sessions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    uid: int
    gid: int
    pid: int


def parse_peer_address(address: str) -> PeerCredentials:
    """Credentials from libzmq's ``Peer-Address`` over ipc: ``localhost:uid:gid:pid``.

    libzmq reads them with SO_PEERCRED, so a client cannot forge them.
    """
    parts = address.rsplit(":", 3)
    if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
        raise ProtocolError(f"peer address {address!r} carries no ipc credentials")
    return PeerCredentials(int(parts[1]), int(parts[2]), int(parts[3]))


@dataclass(eq=False)
class Session:
    identity: bytes
    peer: PeerCredentials
    name: str
    started: float
    last_seen: float
    tracks: set[str] = field(default_factory=set)
    process_created: float | None = None  # tells a reused pid from ours
    delivered: int | None = None  # frames its tracks read, as its heartbeats say
    discarded: int | None = None  # frames its tracks skipped
    pidfd: int | None = None  # readable once the client's process exits (pidfd_open(2))

    def alive(self) -> bool:
        """False once the client's process is gone (its pid gone or reused);
        polled only for a session without a pidfd."""
        try:
            created: float = psutil.Process(self.peer.pid).create_time()
        except psutil.Error:
            return False
        return created == self.process_created

    def __repr__(self) -> str:
        peer = self.peer
        return f"<Session {self.name!r} pid={peer.pid} uid={peer.uid} tracks={len(self.tracks)}>"


class SessionTable:
    """The open sessions. ``on_exit(session)`` runs on the event loop the moment
    a client's process exits: the kernel tells, through a pidfd, so no
    session costs a poll of /proc."""

    def __init__(self, on_exit: Callable[[Session], None]) -> None:
        self._by_identity: dict[bytes, Session] = {}
        self._on_exit = on_exit

    def __len__(self) -> int:
        return len(self._by_identity)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_identity.values()))

    def get(self, identity: bytes) -> Session | None:
        return self._by_identity.get(identity)

    def open(self, identity: bytes, peer: PeerCredentials, name: str) -> Session:
        now = time.monotonic()
        session = Session(identity, peer, name, now, now, process_created=_create_time(peer.pid))
        session.pidfd = _pidfd(peer.pid)
        if session.pidfd is not None:
            asyncio.get_running_loop().add_reader(session.pidfd, self._on_exit, session)
        self._by_identity[identity] = session
        log.info("session opened: %r", session)
        return session

    def close(self, session: Session, reason: str) -> None:
        if self._by_identity.pop(session.identity, None) is not None:
            log.info("session closed (%s): %r", reason, session)
        if session.pidfd is not None:
            asyncio.get_running_loop().remove_reader(session.pidfd)
            os.close(session.pidfd)
            session.pidfd = None

    def expired(self, timeout_s: float) -> list[tuple[Session, str]]:
        """Sessions whose heartbeats stopped or whose process is gone, with why."""
        deadline = time.monotonic() - timeout_s
        found = []
        for session in self._by_identity.values():
            if session.pidfd is None and not session.alive():
                found.append((session, f"process {session.peer.pid} is gone"))
            elif session.last_seen < deadline:
                found.append((session, f"no heartbeat for {timeout_s:g} s"))
        return found


async def reap_sessions(
    sessions: SessionTable,
    heartbeat_s: float,
    timeout_s: float,
    end: Callable[[Session, str], None],
) -> None:
    """End sessions whose process is gone or whose heartbeats stopped (runs
    until cancelled)."""
    period = heartbeat_s / 2
    while True:
        started = time.monotonic()
        await asyncio.sleep(period)
        # Woken late, the loop itself was stalled: heartbeats may still sit
        # unread in the socket, so silence says nothing about the clients.
        stalled = time.monotonic() - started > period + heartbeat_s
        for session, reason in sessions.expired(math.inf if stalled else timeout_s):
            end(session, reason)


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``, or None (process gone, or a kernel before 5.3)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None
