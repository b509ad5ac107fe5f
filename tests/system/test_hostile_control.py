"""Another local user (nobody) against the control socket: connection
floods, silent and garbage peers, claimed routing ids, a huge message,
a session flood. With a libzmq ROUTER about 1,000 plain connections aborted
the daemon (fds ran out inside libzmq), and a peer that claimed the next
routing id made it assert at the next connect. Now the daemon accepts
connections itself (mediabroker.daemon.zmtp): each of these is refused or
dropped, logged once, and a bystander is served throughout.

The attacker is tests/support/attackers.py, a process that becomes nobody;
the daemon's run dir and socket are open to every user (0o666) so that the
kernel lets it connect at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mediastream import MediaDevices, VideoFrame
from support import Daemon, wait_until
from support.hostile import attacker, reachable_daemon
from support.users import needs_root

pytestmark = needs_root

LIMITS = "[limits]\nconnections = 300\nconnections_per_user = 40\nsessions_per_user = 8\n"
OPEN_TO_ALL = "[access]\nsocket_mode = 0o666\n"


@pytest.fixture
def open_daemon() -> Iterator[Daemon]:
    """A daemon every user may connect to, with small connection caps."""
    with reachable_daemon("hostile", OPEN_TO_ALL + LIMITS) as daemon:
        yield daemon


def served(run_dir: Path) -> bool:
    """A bystander (root) opens a session, lists devices and reads a frame."""
    with MediaDevices(run_dir, name="bystander") as devices:
        track = devices.getUserMedia({"video": {"width": 160, "height": 120}}).getVideoTracks()[0]
        frame = track.read(timeout=5)
        track.stop()
        return isinstance(frame, VideoFrame) and bool(devices.enumerateDevices())


def open_fds(pid: int) -> int:
    return psutil.Process(pid).num_fds()


def test_a_thousand_connections_are_capped_and_the_daemon_serves_on(open_daemon: Daemon) -> None:
    """1. nobody opens 1,000 plain connections and holds them. 2. The daemon
    keeps connections_per_user (40) and closes the rest at once; its fds grow
    by about that much, not 1,000. 3. A bystander of another uid is served
    meanwhile. 4. The refusal is logged once for that peer, naming the key.
    5. When nobody lets go, the daemon's fds come back down."""
    daemon = open_daemon
    before = open_fds(daemon.pid)
    flood = attacker(daemon, "connections", 1000)
    try:
        seen = flood.next(timeout=30)
        assert seen["opened"] == 1000 and seen["kept"] == 40, seen
        grown = open_fds(daemon.pid) - before
        assert grown <= 40 + 5, f"the daemon's fds grew by {grown}"
        assert served(daemon.run_dir)
        log = daemon.log()
        assert log.count("refused a connection for pid") == 1, log[-3000:]
        assert "limits.connections_per_user" in log
        flood.release()
        assert flood.wait() == 0, flood.stderr()
    finally:
        flood.close()
    wait_until(
        lambda: open_fds(daemon.pid) <= before + 2,
        10,
        "the daemon's fds to come back down",
        lambda: open_fds(daemon.pid),
    )


def test_silent_and_garbage_peers_are_dropped(open_daemon: Daemon) -> None:
    """A connection that never greets is dropped at the handshake deadline
    (2 s); one that sends garbage at once."""
    peer = attacker(open_daemon, "silent")
    try:
        quiet, garbage = peer.next(timeout=15), peer.next(timeout=15)
        assert quiet["dropped"] and 1.5 < float(str(quiet["after_s"])) < 5, quiet
        assert garbage["dropped"] and float(str(garbage["after_s"])) < 1, garbage
        assert peer.wait() == 0, peer.stderr()
    finally:
        peer.close()
    assert served(open_daemon.run_dir)


def test_claimed_routing_ids_neither_crash_nor_displace(open_daemon: Daemon) -> None:
    """nobody claims the 32 routing ids a ROUTER would assign next, then
    connects ordinarily (a ROUTER asserted here), then two DEALERs claim one
    id and say hello: each gets its own reply on its own connection."""
    peer = attacker(open_daemon, "claim-ids")
    try:
        assert peer.next(timeout=15) == {"step": "ordinary connect", "devices": 2}
        assert peer.next(timeout=15) == {"step": "twins", "answered": [1, 2]}
        assert peer.wait() == 0, peer.stderr()
    finally:
        peer.close()
    assert served(open_daemon.run_dir)


def test_a_huge_message_is_dropped_unread(open_daemon: Daemon) -> None:
    """A 64 MiB message closes its connection before it is read: the daemon
    grows by less than 8 MiB and answers a bystander."""
    daemon = open_daemon
    before = psutil.Process(daemon.pid).memory_info().rss
    peer = attacker(daemon, "huge")
    try:
        assert peer.next(timeout=15) == {"dropped": True}
    finally:
        peer.close()
    grown = psutil.Process(daemon.pid).memory_info().rss - before
    assert grown < 8 * 2**20, f"the daemon grew by {grown / 2**20:.1f} MiB"
    assert served(daemon.run_dir)


def test_sessions_past_the_users_limit_are_refused_naming_the_key(open_daemon: Daemon) -> None:
    """nobody opens 20 MediaDevices: 8 (sessions_per_user) succeed, the rest
    get NotReadableError naming limits.sessions_per_user and the file; a
    bystander of another uid is not counted against it."""
    daemon = open_daemon
    hog = attacker(daemon, "sessions", 20)
    try:
        seen = hog.next(timeout=30)
        assert seen["outcomes"] == {"ok": 8, "NotReadableError": 12}, seen
        message = str(seen["message"])
        assert "limits.sessions_per_user" in message and str(daemon.config_path) in message
        assert "65534 (nobody)" in message
        assert served(daemon.run_dir)
        hog.release()
        assert hog.wait() == 0, hog.stderr()
    finally:
        hog.close()
    assert daemon.log().count("refused a session for pid") == 1


def test_a_client_past_the_connection_cap_is_told_why(open_daemon: Daemon) -> None:
    """nobody holds 40 connections (its cap); its next MediaDevices fails at
    once with NotReadableError naming limits.connections_per_user, not with
    a silent timeout."""
    daemon = open_daemon
    flood = attacker(daemon, "connections", 40)
    try:
        assert flood.next(timeout=30)["kept"] == 40
        told = attacker(daemon, "sessions", 1)
        try:
            seen = told.next(timeout=10)
            assert seen["outcomes"] == {"NotReadableError": 1}, seen
            assert "limits.connections_per_user" in str(seen["message"]), seen
            told.release()
            assert told.wait() == 0, told.stderr()
        finally:
            told.close()
        flood.release()
        assert flood.wait() == 0, flood.stderr()
    finally:
        flood.close()
