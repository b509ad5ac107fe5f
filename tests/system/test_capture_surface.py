"""What another local process can reach of a capture process: nothing.

Capture processes used to bind a ZeroMQ PUB socket each, for frame
notifications: a 64 MiB subscription stalled one until the watchdog killed
it, and about 1,000 connections would have exhausted its fds, aborting it
inside libzmq (five aborts in 30 s end the camera for everyone). Readers
now wait on the ring's own doorbell (a futex on its newest word), so a
capture process listens on nothing; its only socket is the one it connects
to the daemon's private status socket.
"""

from __future__ import annotations

import socket
import stat

import psutil

from mediastream import MediaDevices, VideoFrame
from mediastream.paths import DAEMON_SOCKETS
from support import Daemon


def listening_unix_sockets(pid: int) -> list[str]:
    """Paths of the unix sockets ``pid`` listens on (psutil reads /proc/net/unix)."""
    listening = []
    for connection in psutil.Process(pid).net_connections(kind="unix"):
        if connection.status == psutil.CONN_LISTEN or (
            connection.type == socket.SOCK_STREAM and connection.laddr and not connection.raddr
        ):
            listening.append(str(connection.laddr))
    return listening


def test_a_capture_process_listens_on_nothing(daemon: Daemon) -> None:
    """1. While a camera and a microphone are read, the run dir holds the
    daemon's sockets and no other. 2. Neither capture process listens on a
    socket. 3. Frames and samples arrive, woken by the doorbell."""
    with MediaDevices(daemon.run_dir, name="reader") as devices:
        stream = devices.getUserMedia({"video": {"width": 320, "height": 240}, "audio": True})
        video, audio = stream.getVideoTracks()[0], stream.getAudioTracks()[0]
        first = video.read(timeout=5)
        assert isinstance(first, VideoFrame)
        assert video.read(timeout=5).seq > first.seq
        assert audio.read(timeout=5)
        sockets = {
            p.name for p in daemon.run_dir.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)
        }
        assert sockets == set(DAEMON_SOCKETS), sockets
        pids = [s["pid"] for s in devices.broker_stats()["sources"]]
        assert len(pids) == 2, pids
        for pid in pids:
            assert listening_unix_sockets(pid) == [], (pid, listening_unix_sockets(pid))
        stream.getTracks()[0].stop()
        stream.getTracks()[1].stop()
