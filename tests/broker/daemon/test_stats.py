"""The ``stats`` reply's figures on a real daemon: measured by the daemon
(frame rate, frames, drops, readers, processes) or reported by each
consumer's heartbeats (delivered, discarded), and what another uid sees."""

from __future__ import annotations

from typing import Any

from mediabroker.metrics import render_metrics
from mediastream import MediaDevices, MediaStreamTrack
from support import Daemon, wait_until
from support.hostile import attacker, reachable_daemon
from support.users import needs_root

NOBODY = 65534
FAKE_FPS = 30.0
RATE_BAND = (20.0, 40.0)  # wide: the machine may be busy with other tests
OPEN_TO_ALL = "[access]\nsocket_mode = 0o666\ngroup = 65534\n"  # as test_quotas


def source_row(devices: MediaDevices, track: MediaStreamTrack) -> dict[str, Any]:
    rows = [s for s in devices.broker_stats()["sources"] if f"track:{track.id}" in s["holders"]]
    assert len(rows) == 1, rows
    return rows[0]


def session_row(devices: MediaDevices, name: str) -> dict[str, Any]:
    return next((s for s in devices.broker_stats()["sessions"] if s["name"] == name), {})


def wait_for_delivered(devices: MediaDevices, name: str, count: int) -> None:
    wait_until(
        lambda: (session_row(devices, name).get("delivered") or 0) >= count,
        10,
        f"the heartbeat to report {count} frames delivered",
        lambda: session_row(devices, name),
    )


def test_the_daemon_measures_each_sources_rate_frames_and_readers(daemon: Daemon) -> None:
    """1. A 640x480 track on the fake camera (30 fps): within a few seconds
    the source's measured rate is near 30. 2. Its frames written grow, and
    drops stay below them. 3. Readers: 1, then 2 with a clone. 4. The
    session's delivered grows with the frames read (heartbeats). 5. The
    daemon and the capture process report CPU seconds and RSS."""
    with MediaDevices(daemon.run_dir, name="measured") as devices:
        track = devices.getUserMedia({"video": {"width": 640, "height": 480}}).getVideoTracks()[0]
        assert track.getSettings()["frameRate"] == FAKE_FPS
        low, high = RATE_BAND
        wait_until(
            lambda: low <= (source_row(devices, track)["measuredRate"] or 0) <= high,
            15,
            f"a measured rate within {RATE_BAND}",
            lambda: source_row(devices, track),
        )
        row = source_row(devices, track)
        assert row["frameRate"] == FAKE_FPS
        first = row["frames"]
        wait_until(
            lambda: source_row(devices, track)["frames"] > first + 5,
            10,
            "more frames written",
            lambda: source_row(devices, track),
        )
        row = source_row(devices, track)
        assert 0 <= row["droppedFrames"] < row["frames"], row
        assert row["holderCount"] == 1 and row["shmBytes"] > 0, row
        clone = track.clone()
        assert source_row(devices, track)["holderCount"] == 2
        clone.stop()
        assert source_row(devices, track)["holderCount"] == 1
        for expected in (5, 10):
            while track.stats["deliveredFrames"] < expected:
                track.read(timeout=5)
            wait_for_delivered(devices, "measured", expected)
        processes = devices.broker_stats()["processes"]
        roles = {p["role"]: p for p in processes}
        capture = roles[f"capture {row['id']}"]
        assert capture["pid"] == row["pid"] and capture["rssBytes"] > 0, processes
        assert roles["daemon"]["cpuSeconds"] > 0 and roles["daemon"]["rssBytes"] > 0
        track.stop()


def test_metrics_render_a_live_daemons_reply(daemon: Daemon) -> None:
    """The renderer on a real reply: the source's frames and the session show."""
    with MediaDevices(daemon.run_dir, name="scraped") as devices:
        track = devices.getUserMedia({"video": {"width": 320, "height": 240}}).getVideoTracks()[0]
        track.read(timeout=5)
        row = source_row(devices, track)
        text = render_metrics(devices.broker_stats())
        assert f'mediabroker_source_frames_total{{source="{row["id"]}",' in text
        assert 'mediabroker_consumer_tracks{consumer="scraped",' in text
        assert 'role="daemon"' in text
        track.stop()


@needs_root
def test_another_uid_sees_only_its_own_session_and_counts() -> None:
    """A root bystander holds a 640x480 track and reads from it; nobody opens
    the same size (one source) and reads 5 frames. 1. nobody's stats list
    only its own session, delivered 5. 2. The shared source shows both
    readers in holderCount, and its rate and frames to both users. 3. Its
    metrics name no root session. 4. Root sees both sessions."""
    with (
        reachable_daemon("stats", OPEN_TO_ALL) as daemon,
        MediaDevices(daemon.run_dir, name="bystander-root") as devices,
    ):
        mine = devices.getUserMedia({"video": {"width": 640, "height": 480}}).getVideoTracks()[0]
        mine.read(timeout=5)
        reader = attacker(daemon, "read-stats", 5)
        try:
            seen = reader.next(timeout=30)
            stats = seen["stats"]
            assert isinstance(stats, dict)
            (session,) = stats["sessions"]
            assert (session["uid"], session["pid"]) == (NOBODY, reader.process.pid), session
            assert session["delivered"] == 5, session
            (row,) = [s for s in stats["sources"] if s["holderCount"] > 0]
            assert row["holderCount"] == 2 and row["holders"] == [f"track:{seen['track']}"]
            assert row["frames"] > 0 and "measuredRate" in row, row
            text = render_metrics(stats)
            assert "bystander-root" not in text and mine.id not in text, text
            names = sorted(s["name"] for s in devices.broker_stats()["sessions"])
            assert names == ["bystander-root", "reader"], names
            reader.release()
            assert reader.wait() == 0, reader.stderr()
        finally:
            reader.close()
        mine.stop()
