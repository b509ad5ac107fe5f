"""How long a session lives when one side stops: the daemon stalled, the
client paused, the daemon killed, the daemon stopping.

Both sides count the other gone after 3 missed heartbeats (heartbeat_s 0.5,
so 1.5 s). A client that hears nothing ends its tracks, fails its requests
and drops its connection, so a daemon that was only stalled sees EOF and
frees the camera when it runs again; a daemon that hears nothing ends the
session and says so, and the client's next request opens a new one.

The clients are real processes (tests/support/clients.py ``watch``: a camera
track, its ``ended`` reported with the reason its read gives, and one more
getUserMedia per line on stdin), paused and resumed with SIGSTOP/SIGCONT;
the pause lengths are the scenarios themselves.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_nothing_left
from mediastream import MediaDevices, NotReadableError
from support import ClientProcess, Daemon, add_figure, segments, wait_until

DAEMON_STALL_S = 2.5  # past the client's 1.5 s of patience, then the daemon runs again
CLIENT_PAUSE_S = 5.0  # past the daemon's 1.5 s session timeout
BRIEF_PAUSE_S = 1.0  # less than the daemon's 1.5 s session timeout
DEAD_DAEMON_BOUND_S = 5.0  # a request to a dead daemon fails within this (it used to take 15 s)
AT_ONCE_S = 1.0  # "at once": a request while the daemon is silent fails within this


def watcher(daemon: Daemon, kinds: str = "video") -> tuple[ClientProcess, dict[str, Any]]:
    """A ``watch`` client holding a track of each of ``kinds``, and its ready line."""
    client = ClientProcess("watch", daemon.run_dir, kinds)
    try:
        ready = client.next(timeout=15)
    except BaseException:
        client.close()
        raise
    assert ready["event"] == "ready", ready
    return client, ready


def finish(client: ClientProcess) -> None:
    """EOF on the client's stdin: it closes its MediaDevices and must exit 0."""
    assert client.process.stdin is not None
    client.process.stdin.close()
    status = client.wait(15)
    assert status == 0, client.stderr()


def sessions_of(run_dir: Path, pid: int) -> list[dict[str, Any]]:
    """The daemon's sessions of process ``pid``, as a fresh root client sees them."""
    with MediaDevices(run_dir, name="observer") as devices:
        return [s for s in devices.broker_stats()["sessions"] if s["pid"] == pid]


def sources(run_dir: Path) -> list[dict[str, Any]]:
    with MediaDevices(run_dir, name="observer") as devices:
        return list(devices.broker_stats()["sources"])


def holds_no_track(run_dir: Path, pid: int) -> bool:
    return all(not s["tracks"] for s in sessions_of(run_dir, pid))


def wait_source_closed(daemon: Daemon) -> None:
    """No source left, and its segment unlinked (idle close grace 0.3 s)."""
    wait_until(
        lambda: not sources(daemon.run_dir),
        10,
        "the daemon to close the source nobody holds",
        lambda: sources(daemon.run_dir),
    )
    wait_until(
        lambda: not segments(daemon.prefix),
        10,
        "the source's segment to be unlinked",
        lambda: segments(daemon.prefix),
    )


def assert_a_new_session_works(client: ClientProcess, daemon: Daemon, pid: int) -> None:
    """The client's next getUserMedia works and reads a frame, in a new
    session holding only that track; refusals meanwhile may only say the
    daemon is not answering, never "say hello first" (the old bug: every
    call after a lost session failed so, forever)."""
    client.release()
    again: dict[str, Any] = client.next(timeout=15)
    assert again["event"] == "again" and again["ok"], again
    assert "say hello first" not in str(again), again
    refusals = [str(r) for r in again["refusals"]]
    assert all(r.startswith("the daemon is not answering") for r in refusals), refusals
    [session] = sessions_of(daemon.run_dir, pid)
    assert session["tracks"] == [again["track"]], session


def test_a_stalled_daemon_frees_the_camera_of_a_client_that_gave_up(daemon: Daemon) -> None:
    """The daemon is stopped (SIGSTOP) for 2.5 s while a client holds a camera track.
    1. While the daemon is still stopped, the client's track fires ``ended``
       (within 5 s of the stall), its read saying no heartbeat came.
    2. Once the daemon runs again (SIGCONT) it sees the client's dropped
       connection: the log says that session closed with its connection,
       no session of that process holds a track (stats from a new root
       client), and the source and its segment go (nobody else holds it).
    3. The same client's next getUserMedia works and reads a frame: a new
       session of that pid holding just the new track. Refusals meanwhile
       may only say the daemon is not answering (the client had not heard
       its heartbeat yet), never "say hello first".
    4. The daemon is then stopped normally and leaves nothing."""
    client, ready = watcher(daemon)
    try:
        pid = int(ready["pid"])
        stalled = time.monotonic()
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            ended = client.next(timeout=10)
            noticed_s = time.monotonic() - stalled
            left = DAEMON_STALL_S - noticed_s
            if left > 0:
                time.sleep(left)  # the stall is the scenario: it lasts 2.5 s
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        add_figure("lifetimes: a client noticed a stalled daemon after (s)", noticed_s)
        assert ended["event"] == "ended" and ended["track"] == ready["tracks"]["video"], ended
        assert "no heartbeat" in str(ended["reason"]), ended
        assert noticed_s < 5.0, f"the client noticed the stall after {noticed_s:.1f} s"

        wait_until(
            lambda: holds_no_track(daemon.run_dir, pid),
            10,
            "the resumed daemon to release the client's tracks",
            lambda: sessions_of(daemon.run_dir, pid),
        )
        closed = [
            line
            for line in daemon.log().splitlines()
            if "session closed" in line and f"'watcher' pid={pid}" in line
        ]
        assert closed and "(its connection closed)" in closed[0], closed
        wait_source_closed(daemon)

        assert_a_new_session_works(client, daemon, pid)
        finish(client)
    finally:
        client.close()


def test_a_paused_client_loses_its_session_and_opens_a_new_one(daemon: Daemon) -> None:
    """A client holding a camera track is stopped (SIGSTOP) for 5 s.
    1. While it is stopped the daemon reaps its session (the log says
       "session closed (no heartbeat"), releases its track and closes the
       source and its segment.
    2. After SIGCONT the client's track fires ``ended``, its read giving the
       daemon's reason ("ended the session: no heartbeat"): on waking the
       client knows the silence was its own pause and reads what waited in
       its socket, the notice included (it once blamed the daemon).
    3. Its next getUserMedia works and reads a frame, in a new session of
       that pid: never "say hello first" (the old bug: every call after a
       reaped session failed so, forever). Refusals meanwhile may only say
       the daemon is not answering.
    4. The daemon is then stopped normally and leaves nothing."""
    client, ready = watcher(daemon)
    try:
        pid = int(ready["pid"])
        reaped_line = f"session closed (no heartbeat for 1.5 s): <Session 'watcher' pid={pid}"
        paused = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(
                lambda: reaped_line in daemon.log(),
                CLIENT_PAUSE_S,
                "the daemon to reap the paused client's session",
                lambda: daemon.log()[-2000:],
            )
            reaped_s = time.monotonic() - paused
            assert not sessions_of(daemon.run_dir, pid)
            wait_source_closed(daemon)
            left = CLIENT_PAUSE_S - (time.monotonic() - paused)
            assert left > 0, "the checks outlasted the pause"
            time.sleep(left)  # the pause is the scenario: it lasts 5 s
        finally:
            os.kill(pid, signal.SIGCONT)
        add_figure("lifetimes: the daemon reaped a paused client after (s)", reaped_s)

        ended = client.next(timeout=10)
        assert ended["event"] == "ended" and ended["track"] == ready["tracks"]["video"], ended
        reason = str(ended["reason"])
        assert "the daemon ended the session: no heartbeat" in reason, ended

        assert_a_new_session_works(client, daemon, pid)
        finish(client)
    finally:
        client.close()


def test_a_client_paused_briefly_keeps_its_session(daemon: Daemon) -> None:
    """A client holding a camera track is stopped for 1 s, less than the
    daemon's 1.5 s session timeout. After SIGCONT its track has not ended,
    the daemon kept its session (no "session closed" for it), and a new
    getUserMedia works in that same session (once, waking, the client took
    its own pause for the daemon's silence and dropped everything)."""
    client, ready = watcher(daemon)
    try:
        pid = int(ready["pid"])
        [before] = sessions_of(daemon.run_dir, pid)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(BRIEF_PAUSE_S)  # the pause is the scenario
        finally:
            os.kill(pid, signal.SIGCONT)
        client.release()
        again: dict[str, Any] = client.next(timeout=15)
        assert again["event"] == "again" and again["ok"] and not again["refusals"], again
        [after] = sessions_of(daemon.run_dir, pid)
        assert set(after["tracks"]) == {ready["tracks"]["video"], again["track"]}, after
        assert after["name"] == before["name"]
        assert f"session closed (no heartbeat for 1.5 s): <Session 'watcher' pid={pid}" not in (
            daemon.log()
        )
        finish(client)
    finally:
        client.close()


def test_a_request_to_a_killed_daemon_fails_within_seconds(tmp_path: Path) -> None:
    """A client (this process) holds a MediaDevices with a camera track; the
    daemon is killed (SIGKILL).
    1. enumerateDevices, called right after the kill, raises NotReadableError
       within 5 s (about 2: three missed heartbeats), not after the 15 s
       request timeout.
    2. While the daemon stays silent, a further request fails at once
       (within 1 s), with NotReadableError.
    3. The track fired ``ended`` and its read raises NotReadableError
       saying no heartbeat came; closing the MediaDevices returns.
    4. The killed daemon's leftovers (sockets, pid file, segment; its
       capture process exits by itself) are cleared by a new daemon on the
       same run dir, which serves, stops on SIGTERM with status 0 and leaves
       nothing."""
    run_dir = tmp_path / "run"
    first = Daemon(run_dir)
    try:
        first.wait_ready()
        devices = MediaDevices(run_dir, name="survivor")
        try:
            track = devices.getUserMedia({"video": {"width": 160, "height": 120}}).getTracks()[0]
            track.read(timeout=5)
            ended: list[str] = []
            track.addEventListener("ended", lambda event: ended.append(event.type))
            first.kill()
            asked = time.monotonic()
            with pytest.raises(NotReadableError) as failed:
                devices.enumerateDevices()
            failed_s = time.monotonic() - asked
            add_figure("lifetimes: a request to a killed daemon failed after (s)", failed_s)
            assert failed_s < DEAD_DAEMON_BOUND_S, f"took {failed_s:.1f} s: {failed.value}"
            assert "heartbeat" in str(failed.value), failed.value

            asked = time.monotonic()
            with pytest.raises(NotReadableError, match="not answering"):
                devices.enumerateDevices()
            again_s = time.monotonic() - asked
            assert again_s < AT_ONCE_S, f"a request while silent took {again_s:.2f} s"

            wait_until(lambda: ended == ["ended"], 5, "the track to fire ended", lambda: ended)
            with pytest.raises(NotReadableError, match="no heartbeat"):
                track.read(timeout=1)
        finally:
            devices.close()
        wait_until(
            lambda: not first.living_children(),
            10,
            "the killed daemon's capture process to exit",
            first.living_children,
        )
    finally:
        first.close()
    second = Daemon(run_dir, prefix=first.prefix)
    try:
        second.wait_ready()
        with MediaDevices(run_dir, name="after") as devices:
            assert devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
        assert second.terminate() == 0, second.log()[-3000:]
        assert_nothing_left(second)
    finally:
        second.close()


def test_a_stopping_daemon_ends_its_clients_tracks_saying_so(daemon: Daemon) -> None:
    """A client holds a camera and a microphone track; the daemon gets SIGTERM.
    1. The daemon exits with status 0.
    2. Both of the client's tracks fire ``ended``, each read saying the
       daemon is stopping.
    3. The client process is unharmed: it closes and exits 0.
    4. The daemon leaves nothing (checked by the fixture)."""
    client, ready = watcher(daemon, "video,audio")
    try:
        status = daemon.terminate()
        assert status == 0, daemon.log()[-3000:]
        ended = [client.next(timeout=10), client.next(timeout=10)]
        assert {e["event"] for e in ended} == {"ended"}, ended
        assert {e["track"] for e in ended} == set(ready["tracks"].values()), ended
        for event in ended:
            assert "the daemon is stopping" in str(event["reason"]), event
        finish(client)
    finally:
        client.close()


def test_a_daemon_restarted_within_the_silence_window_ends_the_old_tracks(
    tmp_path: Path,
) -> None:
    """A service manager restarts a killed daemon in well under the client's
    silence window (here 3 beats of 2 s). The new daemon beats on, but knows
    neither the session nor its tracks: its heartbeat's pid tells the client,
    whose tracks end saying so (they used to stay live, with no frames, for
    ever), and the next getUserMedia opens a new session that reads."""
    run_dir = tmp_path / "run"
    slow_beats = "[sessions]\nheartbeat_s = 2.0\n"
    first = Daemon(run_dir, config=slow_beats)
    second: Daemon | None = None
    try:
        first.wait_ready()
        with MediaDevices(run_dir, name="survivor") as devices:
            track = devices.getUserMedia({"video": {"width": 160, "height": 120}}).getTracks()[0]
            track.read(timeout=5)
            first.kill()
            wait_until(lambda: not first.living_children(), 10, "its capture process to exit")
            first.close()
            second = Daemon(run_dir, prefix=first.prefix, config=slow_beats)
            second.wait_ready()
            wait_until(lambda: track.readyState == "ended", 10, "the old track to end")
            with pytest.raises(NotReadableError, match="restarted"):
                track.read(timeout=0)
            again = devices.getUserMedia({"video": True}).getVideoTracks()[0]
            assert again.read(timeout=5)
            again.stop()
        assert second.terminate() == 0, second.log()[-3000:]
        assert_nothing_left(second)
    finally:
        first.close()
        if second is not None:
            second.close()
