"""Sessions: kernel-vouched credentials, heartbeats, and clients that die."""

from __future__ import annotations

import os
import re

from mediastream import MediaDevices
from support import ClientProcess, Daemon, segments, wait_until


def test_daemon_knows_each_client_by_its_real_pid_uid_and_gid(daemon: Daemon) -> None:
    """Must-hold 3: the credentials are the kernel's (SO_PEERCRED at connect),
    not the client's word."""
    holder = ClientProcess("hold", daemon.run_dir)
    try:
        holder.next()
        with MediaDevices(daemon.run_dir, name="observer") as devices:
            sessions = {s["name"]: s for s in devices.broker_stats()["sessions"]}
            assert sessions["holder"]["pid"] == holder.process.pid
            assert sessions["observer"]["pid"] == os.getpid()
            assert sessions["observer"]["uid"] == os.getuid()
            assert sessions["observer"]["gid"] == os.getgid()
            assert len(sessions["holder"]["tracks"]) == 2
    finally:
        holder.close()


def test_killed_client_is_released_within_two_seconds(daemon: Daemon) -> None:
    """Must-hold 3.

    1. A client process holds a camera and a microphone track.
    2. It is killed with SIGKILL (no bye, no stop).
    3. Within 2 s its session is gone (its connection closed with it), and
       the log line says how many tracks it still held; after the grace
       period its sources close and their rings are unlinked.
    """
    holder = ClientProcess("hold", daemon.run_dir)
    pid = holder.process.pid
    try:
        holder.next()
        assert len(segments(daemon.prefix)) == 2
        with MediaDevices(daemon.run_dir, name="observer") as devices:
            holder.kill()

            def holder_gone() -> bool:
                return all(s["name"] != "holder" for s in devices.broker_stats()["sessions"])

            wait_until(
                holder_gone,
                2.0,
                "the killed client's session to end",
                lambda: devices.broker_stats()["sessions"],
            )
        closed = rf"session closed \(its connection closed\): <Session 'holder' pid={pid} uid=\d+"
        assert re.search(closed + r" tracks=2>", daemon.log()), daemon.log()[-2000:]
        wait_until(
            lambda: not segments(daemon.prefix),
            10,
            "its sources to close",
            lambda: segments(daemon.prefix),
        )
    finally:
        holder.close()


def test_heartbeats_carry_each_consumers_frame_counts(daemon: Daemon) -> None:
    """`mediabroker stats` shows what each consumer read and skipped: the
    client's heartbeats carry its video tracks' totals."""
    with MediaDevices(daemon.run_dir, name="counted") as devices:
        track = devices.getUserMedia({"video": True}).getVideoTracks()[0]
        for _ in range(5):
            track.read(timeout=5)

        def counted() -> dict[str, object] | None:
            return next(s for s in devices.broker_stats()["sessions"] if s["name"] == "counted")

        wait_until(lambda: (counted() or {}).get("delivered") == 5, 5,
                   "the heartbeat to report 5 frames", counted)
        track.stop()  # counts survive the track
        wait_until(lambda: (counted() or {}).get("delivered") == 5, 5, "the same total", counted)
