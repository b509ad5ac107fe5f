"""One user's load against a bystander, at the default limits.

Another local user (nobody, tests/support/attackers.py) asks for 50
distinct camera sizes, opens 200 sessions and makes 1,000 connection
attempts, all held at once, while a root bystander in this process reads a
640x480 30 fps fake camera. The defaults (16 sources, 32 sessions, 64
connections per user) are what must let a well-behaved client through: the
bystander must keep at least 90 % of its idle frame count.

The attacker is a member of the daemon's group here (``access.group`` is
nogroup, nobody's primary group): that is what lets it map the rings of the
tracks it gets, so its 16 sources really run (each a capture process
scaling the bystander's frames). Not a member, it could connect (the
socket is 0666) but not map a ring: its getUserMedia would fail with
NotAllowedError naming the group.

The 50 sizes are asked for all at once, pipelined on one connection: 8
run at a time and the rest wait their turn, and the client's heartbeats
must still be read meanwhile (they used to queue behind the waiting
requests, and the daemon reaped the attacker's session as silent whenever
8 derived capture processes took over 1.5 s to start).

The sessions and sizes come before the connection flood: the flood takes
whatever of the per-user connection cap is left, and done first it would
leave the other two nothing to connect with (test_hostile_control covers
that refusal).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from mediabroker.config import BrokerConfig
from mediastream import MediaDevices, MediaStreamTrack, VideoFrame
from support import ClientProcess, Daemon, add_figure, wait_until
from support.hostile import attacker, reachable_daemon
from support.users import needs_root

pytestmark = needs_root

OPEN_TO_NOBODY = '[access]\ngroup = "nogroup"\nsocket_mode = 0o666\n'
DEFAULTS = BrokerConfig()
WINDOW_S = 3.0  # each measurement window
MIN_RATIO = 0.9  # frames under attack against idle
READ_TIMEOUT_S = 2.0  # a bystander read that waits longer fails the test
SIZES, SESSIONS, CONNECTIONS = 50, 200, 1000
BYSTANDER = {"width": 640, "height": 480, "frameRate": 30}


@dataclass
class Window:
    frames: int  # distinct frame seqs delivered
    median_latency_ms: float  # read time minus the frame's capture time


@dataclass
class Bystander:
    """Reads ``track`` on a thread of its own from start to `stop`, noting
    each frame's read time, seq and capture time (CLOCK_MONOTONIC ns)."""

    track: MediaStreamTrack
    reads: list[tuple[int, int, int]] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.track.read(timeout=READ_TIMEOUT_S)
                read_ns = time.monotonic_ns()
                assert isinstance(frame, VideoFrame)
                self.reads.append((read_ns, frame.seq, round(frame.timestamp * 1e9)))
        except BaseException as exc:  # reported by `check`
            self.error = exc

    def check(self) -> None:
        assert self.error is None, f"the bystander's read failed: {self.error!r}"
        assert self._thread is not None and self._thread.is_alive()

    def measure(self, seconds: float) -> Window:
        """Frames read over the next ``seconds`` (a fixed window: the measurement)."""
        start = time.monotonic_ns()
        time.sleep(seconds)
        end = time.monotonic_ns()
        self.check()
        inside = [r for r in list(self.reads) if start <= r[0] < end]
        assert inside, "the bystander read nothing in the window"
        latencies = [(read_ns - captured_ns) / 1e6 for read_ns, _, captured_ns in inside]
        return Window(len({seq for _, seq, _ in inside}), statistics.median(latencies))

    def longest_gap_s(self) -> float:
        times = [r[0] for r in self.reads]
        return max((b - a for a, b in itertools.pairwise(times)), default=0) / 1e9

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(READ_TIMEOUT_S + 5)


@pytest.fixture
def open_daemon() -> Iterator[Daemon]:
    """A daemon at the default limits that nobody may use; at teardown it
    must be alive, stop with status 0 and leave nothing."""
    with reachable_daemon("load", OPEN_TO_NOBODY) as daemon:
        yield daemon


def reported(client: ClientProcess) -> dict[str, Any]:
    """An attacker's report: it has done what it does and holds it."""
    return client.next(timeout=60)


def served(run_dir: Path) -> bool:
    """A second root client opens a session, lists devices and reads a frame."""
    with MediaDevices(run_dir, name="newcomer") as devices:
        track = devices.getUserMedia({"video": {"width": 320, "height": 240}}).getVideoTracks()[0]
        frame = track.read(timeout=5)
        track.stop()
        return isinstance(frame, VideoFrame) and len(devices.enumerateDevices()) == 2


def test_one_users_load_leaves_a_bystander_its_frames(open_daemon: Daemon) -> None:
    """1. A root bystander reads a 640x480 30 fps camera; its frames over
       3 s are counted idle.
    2. nobody asks for 50 distinct sizes at once: 16 (sources_per_user)
       succeed, 34 are refused naming the key.
    3. nobody opens 200 sessions: 31 succeed (32 sessions_per_user, one
       is the sizes client's), 169 are refused naming the key.
    4. nobody makes 1,000 connection attempts: each connects or fails at
       once, and the daemon keeps only what is left of connections_per_user
       (64 less the 32 of the sessions above), closing the rest.
    5. With all three held (and the 16 sources live, each a capture
       process), the bystander's frames over 3 s are at least 90 % of the
       idle count; its median frame latency, idle and under
       attack, is recorded as a figure (nothing asserted about it).
    6. Meanwhile a new root client is served, the bystander never waited
       past its 2 s read timeout, and its track stayed live.
    7. When nobody lets go, each attacker exits 0; the daemon's state comes
       back to the bystander's one session and one source and its fds to
       what they were; it is alive, stops with status 0 and leaves nothing."""
    daemon = open_daemon
    with MediaDevices(daemon.run_dir, name="bystander") as devices:
        track = devices.getUserMedia({"video": BYSTANDER}).getVideoTracks()[0]
        settings = track.getSettings()
        assert (settings["width"], settings["height"], settings["frameRate"]) == (640, 480, 30)
        bystander = Bystander(track)
        bystander.start()
        try:
            wait_until(
                lambda: len(bystander.reads) >= 10 or bystander.error,
                10,
                "the bystander's first frames",
                lambda: (len(bystander.reads), bystander.error),
            )
            fds_before = psutil.Process(daemon.pid).num_fds()
            idle = bystander.measure(WINDOW_S)

            attackers: list[ClientProcess] = []
            try:
                sizes = attacker(daemon, "sizes", SIZES)
                attackers.append(sizes)
                seen = reported(sizes)
                ok = DEFAULTS.sources_per_user
                assert seen["outcomes"] == {"ok": ok, "NotReadableError": SIZES - ok}, seen
                assert "limits.sources_per_user" in str(seen["message"]), seen

                sessions = attacker(daemon, "sessions", SESSIONS)
                attackers.append(sessions)
                seen = reported(sessions)
                ok = DEFAULTS.sessions_per_user - 1
                assert seen["outcomes"] == {"ok": ok, "NotReadableError": SESSIONS - ok}, seen
                assert "limits.sessions_per_user" in str(seen["message"]), seen

                flood = attacker(daemon, "connections", CONNECTIONS)
                attackers.append(flood)
                seen = reported(flood)
                held = 1 + (DEFAULTS.sessions_per_user - 1)  # the sizes and sessions clients
                assert seen["opened"] + seen["failed"] == CONNECTIONS, seen
                assert seen["kept"] == DEFAULTS.connections_per_user - held, seen

                attacked = bystander.measure(WINDOW_S)
                stats = devices.broker_stats()
                live = [s for s in stats["sources"] if s["state"] == "live"]
                assert len(live) == 1 + DEFAULTS.sources_per_user, stats["sources"]
                assert served(daemon.run_dir)
                assert daemon.process.poll() is None, daemon.log()[-3000:]

                for client in attackers:
                    client.release()
                for client in attackers:
                    assert client.wait(30) == 0, client.stderr()
            finally:
                for client in attackers:
                    client.close()

            bystander.check()
            assert track.readyState == "live"
            wait_until(
                lambda: back_to_the_bystander(devices),
                15,
                "the daemon to hold only the bystander's session and source",
                lambda: devices.broker_stats(),
            )
            wait_until(
                lambda: psutil.Process(daemon.pid).num_fds() <= fds_before + 2,
                15,
                "the daemon's fds to come back down",
                lambda: (fds_before, psutil.Process(daemon.pid).num_fds()),
            )
        finally:
            bystander.stop()
        longest_gap_s = bystander.longest_gap_s()
        track.stop()

    ratio = attacked.frames / idle.frames
    add_figure("load: bystander frames under attack / idle", ratio)
    add_figure("load: bystander frames idle (3 s)", idle.frames)
    add_figure("load: bystander frames under attack (3 s)", attacked.frames)
    add_figure("load: bystander median latency idle (ms)", idle.median_latency_ms)
    add_figure("load: bystander median latency under attack (ms)", attacked.median_latency_ms)
    add_figure("load: bystander longest wait for a frame (s)", longest_gap_s)
    assert ratio >= MIN_RATIO, f"{attacked.frames} frames under attack, {idle.frames} idle"


def back_to_the_bystander(devices: MediaDevices) -> bool:
    stats = devices.broker_stats()
    names = sorted(s["name"] for s in stats["sessions"])
    return names == ["bystander"] and len(stats["sources"]) == 1
