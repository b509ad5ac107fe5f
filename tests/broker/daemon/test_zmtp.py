"""daemon/zmtp.py in-process: the server end of ZMTP against real libzmq
peers and raw sockets on a scratch unix socket."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from mediabroker.daemon.zmtp import (
    GREETING,
    Cap,
    Connection,
    ConnectionLimits,
    PeerCredentials,
    ZmtpServer,
    peer_credentials,
)

LIMITS = ConnectionLimits(total=4, per_uid=3, max_message_bytes=1024, handshake_s=0.5)
Scenario = Callable[[ZmtpServer, "Recorder"], Awaitable[None]]


class Recorder:
    """What the server handed to its callbacks."""

    def __init__(self) -> None:
        self.messages: list[list[bytes]] = []
        self.closed: list[Connection] = []
        self.refused: list[Cap] = []

    async def on_message(self, connection: Connection, frames: list[bytes]) -> None:
        self.messages.append(frames)
        connection.send(b"echo:" + frames[0])

    def on_refused(self, peer: PeerCredentials, cap: Cap) -> bytes:
        self.refused.append(cap)
        return b"refused"


def serve(path: Path, scenario: Scenario, limits: ConnectionLimits = LIMITS) -> None:
    async def main() -> None:
        recorder = Recorder()
        server = ZmtpServer(
            path, limits, recorder.on_message, recorder.closed.append, recorder.on_refused
        )
        await server.start()
        try:
            await scenario(server, recorder)
        finally:
            await server.close(1.0)

    asyncio.run(main())


def dealer(ctx: zmq.asyncio.Context, path: Path, kind: int = zmq.DEALER) -> zmq.asyncio.Socket:
    socket_ = ctx.socket(kind)
    socket_.setsockopt(zmq.LINGER, 0)
    socket_.connect(f"ipc://{path}")
    return socket_


async def until(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
    assert predicate(), what


def test_a_dealer_is_served_and_its_credentials_are_the_kernels(tmp_path: Path) -> None:
    """A libzmq DEALER greets, sends, gets its reply; the server knows its
    pid, uid and groups (this process's), and sees the close."""

    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        ctx = zmq.asyncio.Context()
        peer = dealer(ctx, tmp_path / "s")
        await peer.send(b"hi")
        assert await asyncio.wait_for(peer.recv(), 5) == b"echo:hi"
        [connection] = list(server)
        assert connection.peer.pid == os.getpid() and connection.peer.uid == os.getuid()
        assert set(os.getgroups()) | {os.getgid()} <= connection.peer.groups
        peer.close()
        await until(lambda: seen.closed, "the close")
        ctx.term()

    serve(tmp_path / "s", scenario)


@pytest.mark.parametrize("kind", [zmq.REQ, zmq.SUB, zmq.PUSH])
def test_only_dealers_are_accepted(tmp_path: Path, kind: int) -> None:
    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        ctx = zmq.asyncio.Context()
        peer = dealer(ctx, tmp_path / "s", kind)
        await until(lambda: server.counters["bad handshakes"] >= 1, "the refused handshake")
        assert not list(server) and not seen.closed
        peer.close()
        ctx.term()

    serve(tmp_path / "s", scenario)


def raw_peer(path: Path) -> socket.socket:
    """A peer that completes the handshake by hand, as a DEALER would."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(GREETING)
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    sock.sendall(bytes((0x04, len(body))) + body)
    return sock


def test_a_frame_over_the_limit_closes_the_connection_unread(tmp_path: Path) -> None:
    """The peer announces 64 MiB and sends a few bytes: closed at the header."""

    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        sock = raw_peer(tmp_path / "s")
        sock.sendall(b"\x02" + struct.pack(">Q", 64 * 2**20) + b"xxxx")
        await until(lambda: seen.closed, "the close")
        assert server.counters["protocol errors"] == 1 and not seen.messages
        sock.close()

    serve(tmp_path / "s", scenario)


def test_a_message_of_too_many_parts_closes_the_connection(tmp_path: Path) -> None:
    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        sock = raw_peer(tmp_path / "s")
        sock.sendall(b"\x01\x01x" * 10 + b"\x00\x01x")
        await until(lambda: seen.closed, "the close")
        assert not seen.messages
        sock.close()

    serve(tmp_path / "s", scenario)


def test_a_silent_peer_is_dropped_at_the_handshake_deadline(tmp_path: Path) -> None:
    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(tmp_path / "s"))
        await until(lambda: server.counters["bad handshakes"] == 1, "the deadline", 3)
        assert len(server) == 0
        sock.close()

    serve(tmp_path / "s", scenario)


def test_caps_refuse_the_excess_and_tell_it_why(tmp_path: Path) -> None:
    """per_uid 3: a 4th connection of this uid is refused; a refused DEALER
    receives the last words before the close."""

    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        ctx = zmq.asyncio.Context()
        held = [dealer(ctx, tmp_path / "s") for _ in range(3)]
        for peer in held:
            await peer.send(b"x")
            await asyncio.wait_for(peer.recv(), 5)
        late = dealer(ctx, tmp_path / "s")
        assert await asyncio.wait_for(late.recv(), 5) == b"refused"
        assert seen.refused[0] is Cap.PER_UID and len(server) == 3
        for peer in [*held, late]:
            peer.close()
        ctx.term()

    serve(tmp_path / "s", scenario)


def test_the_total_cap_refuses_past_it_whoever_connects(tmp_path: Path) -> None:
    """total 2 (per uid 5): a third connection is refused with Cap.TOTAL."""
    limits = ConnectionLimits(total=2, per_uid=5, max_message_bytes=1024)

    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        ctx = zmq.asyncio.Context()
        held = [dealer(ctx, tmp_path / "s") for _ in range(2)]
        for peer in held:
            await peer.send(b"x")
            await asyncio.wait_for(peer.recv(), 5)
        late = dealer(ctx, tmp_path / "s")
        assert await asyncio.wait_for(late.recv(), 5) == b"refused"
        assert seen.refused == [Cap.TOTAL] and len(server) == 2
        for peer in [*held, late]:
            peer.close()
        ctx.term()

    serve(tmp_path / "s", scenario, limits)


def test_a_peer_that_does_not_read_has_its_messages_dropped(tmp_path: Path) -> None:
    """The send buffer limit: messages beyond it are counted, not queued."""
    limits = ConnectionLimits(4, 3, 1024, send_buffer_bytes=64 * 1024)

    async def scenario(server: ZmtpServer, seen: Recorder) -> None:
        sock = raw_peer(tmp_path / "s")
        await until(lambda: list(server), "the connection")
        [connection] = list(server)
        sent = [connection.send(b"y" * 4096) for _ in range(1000)]
        assert not all(sent) and connection.dropped == sent.count(False) > 0
        sock.close()

    serve(tmp_path / "s", scenario, limits)


def test_peer_credentials_of_a_socketpair_are_our_own() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = peer_credentials(left)
    assert (peer.uid, peer.gid, peer.pid) == (os.getuid(), os.getgid(), os.getpid())
    assert peer.groups == frozenset(os.getgroups()) | {os.getgid()}
