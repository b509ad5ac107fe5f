"""The daemon's control socket and lifecycle: hostile bytes, SIGTERM, SIGKILL."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
import zmq

from conftest import assert_nothing_left
from mediastream import MediaDevices, NotReadableError, wire
from mediastream.paths import control_endpoint
from support import Daemon, segments, wait_until


@pytest.fixture
def raw_client(daemon: Daemon):  # type: ignore[no-untyped-def]
    """A bare DEALER on the control socket, for messages no client library would send."""
    ctx = zmq.Context()
    socket = ctx.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    socket.connect(control_endpoint(daemon.run_dir))
    yield socket
    socket.close()
    ctx.term()


def ask(socket: zmq.Socket, payload: bytes) -> wire.Reply:  # type: ignore[type-arg]
    socket.send(payload)
    return wire.decode_reply(socket.recv())


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xc1garbage", "ProtocolError"),
        (msgpack.packb([1, 2, 3]), "ProtocolError"),
        (msgpack.packb({"v": 99, "id": 5, "op": "hello", "args": {}}), "ProtocolError"),
        (msgpack.packb({"v": 1, "id": 6, "op": "format_disk", "args": {}}), "ProtocolError"),
        (
            msgpack.packb({"v": 1, "id": 7, "op": "stopTrack", "args": {"trackId": 3}}),
            "ProtocolError",
        ),
        (
            msgpack.packb({"v": 1, "id": 8, "op": "enumerateDevices", "args": {}}),
            "InvalidStateError",
        ),
        (b"x" * (wire.MAX_MESSAGE_BYTES + 1), "ProtocolError"),
    ],
)
def test_bad_requests_get_error_replies_and_the_daemon_serves_on(
    daemon: Daemon,
    raw_client: zmq.Socket,
    payload: bytes,
    error: str,  # type: ignore[type-arg]
) -> None:
    """Must-hold 5: every malformed, oversized or unknown message is answered
    with an error (carrying its id when it had one) and counted."""
    reply = ask(raw_client, payload)
    assert not reply.ok and reply.error_name == error, reply
    request_id = msgpack.unpackb(payload).get("id", 0) if payload[:1] == b"\x84" else 0
    assert reply.id == request_id
    with MediaDevices(daemon.run_dir) as devices:
        assert len(devices.enumerateDevices()) == 2
        assert devices.broker_stats()["counters"]["errors"] >= 1


def test_multipart_junk_is_dropped_and_counted(daemon: Daemon, raw_client: zmq.Socket) -> None:  # type: ignore[type-arg]
    raw_client.send_multipart([b"one", b"two", b"three"])
    with MediaDevices(daemon.run_dir) as devices:
        wait_until(
            lambda: devices.broker_stats()["counters"]["malformed"] == 1,
            5,
            "the junk to be counted",
            devices.broker_stats,
        )


def test_sigterm_ends_every_track_and_leaves_nothing(daemon: Daemon) -> None:
    """Must-hold 2.

    1. A client holds a video and an audio track.
    2. The daemon gets SIGTERM: both tracks fire ``ended`` (the daemon ended
       them, not the script), reads raise NotReadableError.
    3. It exits 0 with no segment, socket or child process left.
    """
    with MediaDevices(daemon.run_dir) as devices:
        stream = devices.getUserMedia({"video": True, "audio": True})
        ended: list[str] = []
        for track in stream.getTracks():
            track.addEventListener("ended", lambda ev: ended.append(ev.target.kind))
        assert daemon.terminate() == 0
        wait_until(
            lambda: sorted(ended) == ["audio", "video"], 5, "both tracks to end", lambda: ended
        )
        assert not stream.active
        with pytest.raises(NotReadableError):
            stream.getVideoTracks()[0].read(timeout=1)
    assert_nothing_left(daemon)


def test_clients_see_a_killed_daemon_and_a_new_one_sweeps_its_rings(
    tmp_path: Path,
) -> None:
    """1. A daemon serving a track is killed with SIGKILL: its rings stay behind.
    2. The client's track ends within 2 s (no heartbeat) and read() raises.
    3. A new daemon on the same run dir and prefix sweeps the stale rings and serves."""
    first = Daemon(tmp_path / "run")
    try:
        first.wait_ready()
        devices = MediaDevices(first.run_dir)
        track = devices.getUserMedia({"video": True}).getVideoTracks()[0]
        assert segments(first.prefix)
        first.kill()
        wait_until(lambda: track.readyState == "ended", 2.5, "the track to end")
        with pytest.raises(NotReadableError):
            track.read(timeout=1)
        devices.close()
        wait_until(
            lambda: not first.living_children(),
            10,
            "orphaned capture processes to exit",
            first.living_children,
        )
        assert segments(first.prefix), "nothing to sweep: the test proves nothing"
    finally:
        first.close()
    second = Daemon(tmp_path / "run", prefix=first.prefix)
    try:
        second.wait_ready()
        assert not segments(first.prefix)
        with MediaDevices(second.run_dir) as devices:
            assert devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
        assert second.terminate() == 0
        assert_nothing_left(second)
    finally:
        second.close()
