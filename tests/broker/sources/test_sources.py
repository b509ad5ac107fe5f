"""Sources: sharing between processes, grace-period close, crash and restart."""

from __future__ import annotations

import hashlib
import os
import signal
import stat

import psutil
import pytest

from mediabroker.capture.fake import pattern_seq, verify_pattern
from mediastream import MediaDevices, VideoFrame
from mediastream.ring import SHM_DIR
from support import ClientProcess, Daemon, segments, wait_until


def capture_pids(daemon: Daemon) -> set[int]:
    """The daemon's capture processes (spawned children, not the resource tracker)."""
    pids = set()
    for child in psutil.Process(daemon.pid).children():
        cmdline = " ".join(child.cmdline())
        if "spawn_main" in cmdline:
            pids.add(child.pid)
    daemon.note_children()
    return pids


def video_segments(daemon: Daemon) -> list[str]:
    return [name for name in segments(daemon.prefix) if "video" in name]


def test_two_processes_share_one_ring_and_see_identical_pixels(daemon: Daemon) -> None:
    """Must-hold 1.

    1. This process and a client process ask for the same camera and settings.
    2. Both read frames; every seq both saw carries the same pixels, and the
       pixels are the fake pattern of that seq (not torn).
    3. There is one video ring and one capture process; a third process joining
       adds neither.
    """
    other = ClientProcess("read", daemon.run_dir, 320, 240, 40)
    try:
        assert other.next()["event"] == "ready"
        with MediaDevices(daemon.run_dir) as devices:
            track = devices.getUserMedia({"video": {"width": 320, "height": 240}}).getVideoTracks()[
                0
            ]
            mine: dict[int, str] = {}
            for _ in range(40):
                frame = track.read(timeout=5)
                assert isinstance(frame, VideoFrame) and verify_pattern(frame.data)
                assert pattern_seq(frame.data) == frame.seq
                mine[frame.seq] = hashlib.sha1(frame.data).hexdigest()
            theirs = {}
            for _ in range(40):
                line = other.next()
                assert line["owndata"] is False and line["valid"] is True
                theirs[line["seq"]] = line["digest"]
            common = mine.keys() & theirs.keys()
            assert len(common) >= 20, f"the readers overlapped on only {sorted(common)}"
            assert all(mine[seq] == theirs[seq] for seq in common)
            assert len(video_segments(daemon)) == 1
            capture_before = capture_pids(daemon)
            assert len(capture_before) == 1

            third = ClientProcess("read", daemon.run_dir, 320, 240, 5)
            try:
                assert third.next()["event"] == "ready"
                assert capture_pids(daemon) == capture_before
                assert len(video_segments(daemon)) == 1
                assert third.wait() == 0
            finally:
                third.close()
            track.stop()
        assert other.wait() == 0
    finally:
        other.close()


def test_last_stop_closes_the_source_after_the_grace_period(daemon: Daemon) -> None:
    """Must-hold 2: the last track's stop unlinks the ring and ends the capture
    process after the grace period; a clone keeps the source open until it stops."""
    with MediaDevices(daemon.run_dir) as devices:
        track = devices.getUserMedia({"video": True}).getVideoTracks()[0]
        (pid,) = capture_pids(daemon)
        clone = track.clone()
        track.stop()
        assert clone.read(timeout=5).seq > 0  # still served
        assert video_segments(daemon), "the clone's source closed early"
        clone.stop()
        wait_until(
            lambda: not video_segments(daemon),
            10,
            "the ring to be unlinked",
            lambda: segments(daemon.prefix),
        )
        wait_until(lambda: not psutil.pid_exists(pid), 10, f"capture process {pid} to exit")


def test_ring_segments_are_group_readable_not_world_readable(daemon: Daemon) -> None:
    with MediaDevices(daemon.run_dir) as devices:
        devices.getUserMedia({"video": True})
        (name,) = video_segments(daemon)
        mode = stat.S_IMODE(os.stat(SHM_DIR / name).st_mode)
        assert mode == 0o640, oct(mode)


def test_capture_crash_mutes_then_unmutes_and_reading_goes_on(daemon: Daemon) -> None:
    """Must-hold 6: killing the capture process costs a restart, not the daemon.

    1. A track reads frames; its capture process is killed with SIGKILL.
    2. The track fires mute, then unmute; reading continues on the same ring
       with sequence numbers that keep growing.
    """
    with MediaDevices(daemon.run_dir) as devices:
        track = devices.getUserMedia({"video": {"width": 160, "height": 120}}).getVideoTracks()[0]
        events: list[str] = []
        track.addEventListener("mute", lambda ev: events.append(ev.type))
        track.addEventListener("unmute", lambda ev: events.append(ev.type))
        before = track.read(timeout=5).seq
        (pid,) = capture_pids(daemon)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: events == ["mute", "unmute"], 10, "mute then unmute", lambda: events)
        after = track.read(timeout=5)
        assert after.seq > before and verify_pattern(after.data)
        assert track.readyState == "live" and not track.muted
        assert capture_pids(daemon) and pid not in capture_pids(daemon)


@pytest.mark.parametrize("size", [(64, 48), (640, 480)])
def test_fake_camera_renders_straight_into_the_slot(size: tuple[int, int]) -> None:
    """The capture backend writes into the view it is given: no frame is allocated."""
    import numpy as np

    from mediabroker.capture.fake import FakeCamera
    from mediastream.ring import VideoFormat

    camera = FakeCamera(VideoFormat(*size), frame_rate=0)
    view = np.zeros((size[1], size[0], 3), np.uint8)
    address = view.__array_interface__["data"][0]
    camera.read_into(view, 7)
    assert view.__array_interface__["data"][0] == address
    assert pattern_seq(view) == 7 and verify_pattern(view)
