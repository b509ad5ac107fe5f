"""A local peer that subscribes with a huge topic to a capture process's PUB
socket. libzmq buffers a subscription whole before it hands it over, so
without an inbound limit one 64 MiB subscription stalled a capture process
until the watchdog killed it (and grew the daemon by about 1.7 GiB when it
still had an events PUB socket). With the limit the connection is dropped
and nobody else notices. The control socket's own limits are
test_hostile_control.py's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from mediastream import MediaDevices
from mediastream.paths import source_endpoint
from support import Daemon, child_env, wait_until

HUGE_TOPIC_BYTES = 64 * 1024 * 1024
RSS_GROWTH_LIMIT = 32 * 1024 * 1024  # well under the topic: it was never held
DROP_TIMEOUT_S = 10.0


# The attacker is a process of its own: after its subscription is refused,
# libzmq in that process may crash when its context ends, which must not be
# the test's crash. It says whether the publisher dropped it, then waits for
# its stdin to close and leaves without ending its context.
ATTACKER = """
import os, sys, zmq
socket = zmq.Context().socket(zmq.SUB)
monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
socket.connect(sys.argv[1])
socket.setsockopt(zmq.SUBSCRIBE, b"x" * int(sys.argv[2]))
print("dropped" if monitor.poll(int(float(sys.argv[3]) * 1000)) else "kept", flush=True)
sys.stdin.read()
os._exit(0)
"""


@contextmanager
def hostile_subscriber(endpoint: str) -> Iterator[None]:
    """A process subscribes to ``endpoint`` with a huge topic; this returns
    once the publisher has dropped that connection (fails if it never does)."""
    args = [endpoint, str(HUGE_TOPIC_BYTES), str(DROP_TIMEOUT_S)]
    attacker = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert attacker.stdout is not None
        verdict = attacker.stdout.readline().strip()
        assert verdict == "dropped", f"{endpoint} kept a 64 MiB subscription ({verdict!r})"
        yield
    finally:
        attacker.kill()
        attacker.communicate(timeout=5)


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_a_huge_subscription_to_a_frame_socket_does_not_stall_the_capture(
    daemon: Daemon,
) -> None:
    """1. A track reads a camera. 2. A peer subscribes to that source's frame
    socket with a 64 MiB topic; it is dropped. 3. The same capture process keeps running,
    its RSS grows by less than 32 MiB, and the reader keeps getting frames."""
    with MediaDevices(daemon.run_dir, name="reader") as devices:
        stream = devices.getUserMedia({"video": {"width": 320, "height": 240}})
        [track] = stream.getVideoTracks()
        [source] = devices.broker_stats()["sources"]
        capture_pid = source["pid"]
        before = _rss(capture_pid)
        with hostile_subscriber(source_endpoint(daemon.run_dir, source["id"])):
            grown = _rss(capture_pid) - before
            first = track.read(timeout=2.0).seq
            wait_until(
                lambda: track.read(timeout=2.0).seq >= first + 10,
                timeout=5.0,
                what="ten more frames while the hostile subscriber is connected",
            )
        [after] = devices.broker_stats()["sources"]
        track.stop()
    assert after["pid"] == capture_pid, "the capture process was restarted"
    assert grown < RSS_GROWTH_LIMIT, f"the capture process grew by {grown / 2**20:.0f} MiB"
