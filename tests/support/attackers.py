"""Another local user against the daemon's control socket:
``python tests/support/attackers.py MODE RUN_DIR [ARGS]`` (started as root).

It imports what it needs, then becomes nobody:nogroup with no supplementary
groups (as tests/support/access_probe.py does, and for the same reason: the
interpreter may live where nobody cannot read), so the daemon sees another
uid. Each mode prints JSON lines of what it saw; modes that hold something
wait for a line on stdin before they let go.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from mediastream import MediaDevices, MediaStreamError, wire
from mediastream.paths import CONTROL, control_endpoint

NOBODY = 65534


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def wait_for_stdin() -> None:
    sys.stdin.readline()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the daemon closed ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def connections(run_dir: str, count: str) -> None:
    """Open ``count`` plain connections that never say a word; report how many
    the daemon closed at once (past its caps) and how many it kept."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    path = str(Path(run_dir) / CONTROL)
    held: list[socket.socket] = []
    failed = 0
    for _ in range(int(count)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            failed += 1
            sock.close()
            continue
        held.append(sock)
    closed = _closed_now(held)
    emit(opened=len(held), failed=failed, closed=closed, kept=len(held) - closed)
    wait_for_stdin()
    for sock in held:
        sock.close()


def _closed_now(socks: list[socket.socket], settle_s: float = 1.0) -> int:
    """How many of ``socks`` the daemon closed within ``settle_s`` (EOF seen)."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + settle_s
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:  # the greeting is data; only EOF is a close
                closed.add(sock)
                selector.unregister(sock)
    selector.close()
    return len(closed)


def silent(run_dir: str) -> None:
    """One connection that sends nothing, one that sends garbage: how long
    until the daemon drops each."""
    path = str(Path(run_dir) / CONTROL)
    for name, first in (("silent", b""), ("garbage", b"GET / HTTP/1.1\r\n\r\n" * 4)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        started = time.monotonic()
        if first:
            sock.sendall(first)
        dropped = closed_by_peer(sock, 10.0)
        emit(kind=name, dropped=dropped, after_s=time.monotonic() - started)
        sock.close()


def sessions(run_dir: str, count: str) -> None:
    """Open ``count`` MediaDevices at once; report what the daemon said."""
    opened: list[MediaDevices] = []
    outcomes: Counter[str] = Counter()
    message = ""
    for _ in range(int(count)):
        try:
            opened.append(MediaDevices(run_dir, name="hog"))
            outcomes["ok"] += 1
        except MediaStreamError as exc:
            outcomes[exc.name] += 1
            message = message or str(exc)
    emit(outcomes=dict(outcomes), message=message)
    wait_for_stdin()
    for devices in opened:
        devices.close()


def sizes(run_dir: str, count: str) -> None:
    """``count`` getUserMedia calls at distinct sizes, all in flight at once
    (pipelined on one connection); report what came back."""
    outcomes: Counter[str] = Counter()
    messages: list[str] = []
    lock = threading.Lock()
    with MediaDevices(run_dir, name="sizes") as devices:

        def ask(index: int) -> None:
            width = 64 + 8 * index
            try:
                devices.getUserMedia({"video": {"width": width, "height": width // 2}})
                result = "ok"
            except MediaStreamError as exc:
                result = exc.name
                with lock:
                    messages.append(str(exc))
            with lock:
                outcomes[result] += 1

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(int(count))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        emit(outcomes=dict(outcomes), message=messages[0] if messages else "")
        wait_for_stdin()


def claim_ids(run_dir: str) -> None:
    """Claim the routing ids libzmq's ROUTER would assign next (0x00 and a
    counter), then connect ordinarily: a ROUTER asserted here. Then two
    DEALERs claim one id and say hello: each must get its own reply."""
    context = zmq.Context()
    endpoint = control_endpoint(Path(run_dir))
    claimed = [_dealer(context, endpoint, b"\x00" + n.to_bytes(4, "big")) for n in range(1, 33)]
    with MediaDevices(run_dir, name="after-claims") as devices:
        emit(step="ordinary connect", devices=len(devices.enumerateDevices()))
    twins = [_dealer(context, endpoint, b"twin") for _ in range(2)]
    for index, twin in enumerate(twins):
        twin.send(wire.encode_request(index + 1, "hello", {"name": "twin", "version": 1}))
    answered = []
    for twin in twins:
        reply = wire.decode_reply(twin.recv()) if twin.poll(5000) else None
        answered.append(reply.id if reply is not None and reply.ok else None)
    emit(step="twins", answered=answered)
    for dealer in claimed + twins:
        dealer.close()
    context.term()


def _dealer(context: zmq.Context[Any], endpoint: str, routing_id: bytes) -> zmq.Socket[Any]:
    dealer: zmq.Socket[Any] = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.ROUTING_ID, routing_id)
    dealer.connect(endpoint)
    return dealer


def huge(run_dir: str) -> None:
    """Send one 64 MiB message; say whether the daemon dropped the connection."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    dealer.connect(control_endpoint(Path(run_dir)))
    dealer.send(b"x" * (64 * 1024 * 1024))
    emit(dropped=bool(monitor.poll(10_000)))
    os._exit(0)  # libzmq may assert at context end after a refused peer; not our test


def stats(run_dir: str, width: str, height: str) -> None:
    """One getUserMedia at ``width`` x ``height``, then what ``broker_stats``
    shows this user: emits the stats and its own track's id; holds until
    released."""
    with MediaDevices(run_dir, name="peeker") as devices:
        track = devices.getUserMedia({"video": {"width": int(width), "height": int(height)}})
        emit(track=track.getVideoTracks()[0].id, stats=devices.broker_stats())
        wait_for_stdin()


def read_stats(run_dir: str, count: str) -> None:
    """Read ``count`` frames of a 640x480 track, wait (at most 10 s) until
    this user's stats show them delivered (the heartbeat carries them), then
    emit those stats and the track's id; holds until released."""
    frames = int(count)
    with MediaDevices(run_dir, name="reader") as devices:
        track = devices.getUserMedia({"video": {"width": 640, "height": 480}}).getVideoTracks()[0]
        for _ in range(frames):
            track.read(timeout=5)
        deadline = time.monotonic() + 10
        while True:  # another process's heartbeat: nothing to block on
            stats = devices.broker_stats()
            mine = [s for s in stats["sessions"] if s["pid"] == os.getpid()]
            if (mine and mine[0].get("delivered") == frames) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        emit(track=track.id, stats=stats)
        wait_for_stdin()


MODES: dict[str, Any] = {
    "connections": connections,
    "silent": silent,
    "sessions": sessions,
    "sizes": sizes,
    "claim-ids": claim_ids,
    "huge": huge,
    "stats": stats,
    "read-stats": read_stats,
}

if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    become_nobody()
    MODES[mode](*args)
