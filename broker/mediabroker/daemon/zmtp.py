"""The daemon's end of ZeroMQ's wire protocol (ZMTP 3.0, NULL security) for
the control socket: clients keep their libzmq DEALER, the daemon accepts.

Design note. A libzmq ROUTER gives a server no say over who connects: it
aborts the whole process when file descriptors run out, lets a peer claim
the routing id it will assign next (an assertion at the next connect), and
tells credentials only with each message. So the daemon accepts control
connections itself:

- credentials are read at accept with SO_PEERCRED and SO_PEERGROUPS: what
  the kernel recorded at connect(), which no later exec, setuid or reuse
  of the pid can change;
- connections are capped per uid and in total; the excess is told why and
  closed within half a second (a few at a time; past that, closed at once),
  so the daemon's fds stay bounded;
- the handshake has a deadline, and a frame larger than the limit closes
  the connection before its body is read;
- each connection gets a random id that its peer can neither see nor choose;
- a message to a connection whose send buffer is full is dropped, as a
  ROUTER drops at its high-water mark: a stopped client cannot grow us.

Only what a DEALER speaks is accepted: the greeting, READY naming
Socket-Type DEALER, then messages. Anything else closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import secrets
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Cap",
    "Connection",
    "ConnectionLimits",
    "PeerCredentials",
    "ZmtpError",
    "ZmtpServer",
    "peer_credentials",
]

log = logging.getLogger(__name__)

SIGNATURE = b"\xff" + bytes(8) + b"\x7f"
GREETING = SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
MAX_COMMAND_BYTES = 4096  # READY: Socket-Type, Identity (255 bytes) and a little metadata
MAX_FRAMES = 4  # a DEALER's request is one frame; a little slack, never a flood of parts
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13
MAX_PEER_GROUPS = 256  # what getsockopt's 1024-byte buffer holds
MAX_TELLING = 16  # refused peers told why at once; the rest are just closed
TELL_TIMEOUT_S = 0.5
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ZmtpError(Exception):
    """The peer broke the protocol or a limit; its connection is closed."""


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Who connected, as the kernel recorded it at connect()."""

    uid: int
    gid: int
    pid: int
    groups: frozenset[int] = frozenset()  # supplementary, the primary gid included


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * MAX_PEER_GROUPS)
        groups = frozenset(struct.unpack(f"{len(raw) // 4}I", raw))
    except OSError:  # ERANGE: more groups than we read; count the primary one only
        groups = frozenset()
    return PeerCredentials(uid, gid, pid, groups | {gid})


class Cap(enum.Enum):
    TOTAL = "total"
    PER_UID = "per_uid"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    total: int  # open connections, with or without a session
    per_uid: int
    max_message_bytes: int  # a larger frame closes the connection unread
    handshake_s: float = 2.0
    send_buffer_bytes: int = 1024 * 1024  # beyond this, messages to the peer are dropped


class Connection:
    """One accepted peer. ``id`` is random and never leaves the daemon."""

    def __init__(self, peer: PeerCredentials, writer: asyncio.StreamWriter, limit: int) -> None:
        self.id = secrets.token_bytes(16)
        self.peer = peer
        self.dropped = 0  # messages not sent: the peer's buffer was full
        self._writer = writer
        self._send_limit = limit

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def send(self, payload: bytes) -> bool:
        """Queue one single-frame message; False if it was dropped."""
        if self._writer.is_closing():
            return False
        if self._writer.transport.get_write_buffer_size() > self._send_limit:
            self.dropped += 1
            return False
        self._writer.write(_frame_head(0, len(payload)) + payload)
        return True

    def close(self) -> None:
        """Close once what was queued is written (a last notice gets out)."""
        self._writer.close()

    def __repr__(self) -> str:
        return f"<Connection pid={self.peer.pid} uid={self.peer.uid}>"


MessageHandler = Callable[[Connection, list[bytes]], Awaitable[None]]


class ZmtpServer:
    """Accepts DEALERs on the unix socket ``path``. ``on_message(connection,
    frames)`` is awaited for each message in turn, so a handler that waits
    stops reading from that connection alone; ``on_close(connection)`` runs
    once per connection that completed its handshake; ``on_refused(peer,
    cap)`` for each connection refused at accept because a `Cap` was reached
    returns the message to send it before closing (or None)."""

    def __init__(
        self,
        path: Path,
        limits: ConnectionLimits,
        on_message: MessageHandler,
        on_close: Callable[[Connection], None],
        on_refused: Callable[[PeerCredentials, Cap], bytes | None],
    ) -> None:
        self.path = path
        self.limits = limits
        self.counters = Counter[str]()
        self._on_message = on_message
        self._on_close = on_close
        self._on_refused = on_refused
        self._per_uid = Counter[int]()
        self._open = 0
        self._telling = 0  # refused peers being told why, now
        self._connections: dict[bytes, Connection] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    def __len__(self) -> int:
        return self._open

    def connections_of(self, uid: int) -> int:
        return self._per_uid[uid]

    async def start(self, backlog: int = 128) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(os.fspath(self.path))
            listener.listen(backlog)
            listener.setblocking(False)
            self._server = await asyncio.start_unix_server(self._accepted, sock=listener)
        except BaseException:
            listener.close()
            raise

    def broadcast(self, payload: bytes) -> None:
        for connection in self:
            connection.send(payload)

    async def close(self, linger_s: float) -> None:
        """Stop accepting, close every connection once its queued messages
        are written (at most ``linger_s``), and wait for the handlers."""
        if self._server is not None:
            self._server.close()
        for connection in self:
            connection.close()
        if self._handlers:
            _, late = await asyncio.wait(self._handlers, timeout=linger_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            peer = peer_credentials(writer.get_extra_info("socket"))
        except OSError:  # the peer hung up before we asked
            writer.transport.abort()
            self._handlers.discard(task)
            return
        cap = self._cap_reached(peer)
        if cap is not None:
            self.counters["refused"] += 1
            try:
                await self._refuse(peer, cap, reader, writer)
            finally:
                writer.transport.abort()
                self._handlers.discard(task)
            return
        self._open += 1
        self._per_uid[peer.uid] += 1
        try:
            await self._serve(peer, reader, writer)
        finally:
            self._open -= 1
            self._per_uid[peer.uid] -= 1
            if not self._per_uid[peer.uid]:
                del self._per_uid[peer.uid]
            writer.transport.abort()
            self._handlers.discard(task)

    async def _refuse(
        self,
        peer: PeerCredentials,
        cap: Cap,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Tell a refused peer why, when few are being told: a client at its
        limit gets an error it can show, not silence. Past `MAX_TELLING`
        refusals at once, or from a peer that does not finish the handshake
        within `TELL_TIMEOUT_S`, the connection is just closed."""
        last_words = self._on_refused(peer, cap)
        if last_words is None or self._telling >= MAX_TELLING:
            return
        self._telling += 1
        try:
            async with asyncio.timeout(TELL_TIMEOUT_S):
                await _handshake(reader, writer)
                writer.write(_frame_head(0, len(last_words)) + last_words)
                await writer.drain()
        except (ZmtpError, TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._telling -= 1

    def _cap_reached(self, peer: PeerCredentials) -> Cap | None:
        if self._open >= self.limits.total:
            return Cap.TOTAL
        if self._per_uid[peer.uid] >= self.limits.per_uid:
            return Cap.PER_UID
        return None

    async def _serve(
        self, peer: PeerCredentials, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(self.limits.handshake_s):
                await _handshake(reader, writer)
        except (ZmtpError, TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            self.counters["bad handshakes"] += 1
            log.debug("handshake with pid %d failed: %r", peer.pid, exc)
            return
        connection = Connection(peer, writer, self.limits.send_buffer_bytes)
        self._connections[connection.id] = connection
        try:
            await self._receive(connection, reader)
        finally:
            del self._connections[connection.id]
            self._on_close(connection)

    async def _receive(self, connection: Connection, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                try:
                    frames = await _read_message(reader, self.limits.max_message_bytes)
                except ZmtpError as exc:
                    self.counters["protocol errors"] += 1
                    log.info("closed %r: %s", connection, exc)
                    return
                if frames:
                    await self._on_message(connection, frames)
                # Data already buffered does not yield: one flooding peer
                # must not hold the loop from every other one.
                await asyncio.sleep(0)


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The greeting both ways, then READY both ways. Raises `ZmtpError`."""
    writer.write(GREETING)
    greeting = await reader.readexactly(len(GREETING))
    if greeting[0] != 0xFF or not greeting[9] & 0x01:
        raise ZmtpError("not a ZMTP 3 greeting")
    if greeting[10] < 3:
        raise ZmtpError(f"ZMTP {greeting[10]}.{greeting[11]} is too old")
    if greeting[12:32].rstrip(b"\x00") != b"NULL":
        raise ZmtpError("only the NULL mechanism is spoken here")
    writer.write(_command(b"READY", {b"Socket-Type": b"ROUTER"}))
    flags, body = await _read_frame(reader, MAX_COMMAND_BYTES)
    if not flags & COMMAND:
        raise ZmtpError("expected READY, got a message")
    name, properties = _parse_command(body)
    if name != b"READY":
        raise ZmtpError(f"expected READY, got {name!r}")
    if properties.get(b"socket-type") != b"DEALER":
        raise ZmtpError(f"only DEALER peers, not {properties.get(b'socket-type')!r}")


async def _read_message(reader: asyncio.StreamReader, limit: int) -> list[bytes]:
    """The frames of the next message ([] for a command, which is ignored).
    Raises `ZmtpError` for a frame over ``limit`` or too many parts."""
    frames: list[bytes] = []
    while True:
        flags, body = await _read_frame(reader, limit)
        if flags & COMMAND:
            if frames:
                raise ZmtpError("a command inside a multi-part message")
            return []
        frames.append(body)
        if not flags & MORE:
            return frames
        if len(frames) >= MAX_FRAMES:
            raise ZmtpError(f"a message of more than {MAX_FRAMES} parts")


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    flags = head[0]
    if flags & ~(MORE | LONG | COMMAND):
        raise ZmtpError(f"reserved frame flags {flags:#x}")
    if flags & LONG:
        (size,) = struct.unpack(">Q", head[1:] + await reader.readexactly(7))
    else:
        size = head[1]
    if size > limit:
        raise ZmtpError(f"a frame of {size} bytes (the limit is {limit})")
    return flags, await reader.readexactly(size)


def _frame_head(flags: int, size: int) -> bytes:
    if size <= 0xFF:
        return bytes((flags, size))
    return bytes((flags | LONG,)) + struct.pack(">Q", size)


def _command(name: bytes, properties: dict[bytes, bytes]) -> bytes:
    body = bytes((len(name),)) + name
    for key, value in properties.items():
        body += bytes((len(key),)) + key + struct.pack(">I", len(value)) + value
    return _frame_head(COMMAND, len(body)) + body


def _parse_command(body: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """A command's name and its properties (names lower-cased, as ZMTP's are
    case-insensitive). Raises `ZmtpError`."""
    if not body or len(body) < 1 + body[0]:
        raise ZmtpError("a truncated command")
    name, at = body[1 : 1 + body[0]], 1 + body[0]
    properties: dict[bytes, bytes] = {}
    while at < len(body):
        key_size = body[at]
        key = body[at + 1 : at + 1 + key_size]
        at += 1 + key_size
        if at + 4 > len(body):
            raise ZmtpError("a truncated property")
        (value_size,) = struct.unpack_from(">I", body, at)
        at += 4
        if at + value_size > len(body):
            raise ZmtpError("a truncated property value")
        properties[key.lower()] = body[at : at + value_size]
        at += value_size
    return name, properties
