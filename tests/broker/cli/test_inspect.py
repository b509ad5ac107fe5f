"""``mediabroker devices`` and ``mediabroker stats``: the report arithmetic
in-process, then the commands against a real daemon."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

from mediabroker.cli.inspect import StatsSample, render_stats, stats_report
from mediabroker.devices.fakes import fake_devices
from mediastream import MediaDevices
from support import Daemon, run_mediabroker


def on(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """A client command against ``daemon``; fails the test on a traceback."""
    result = run_mediabroker(*args, "--run-dir", str(daemon.run_dir))
    assert "Traceback" not in result.stderr, result.stderr
    return result


# -- stats arithmetic ------------------------------------------------------------------

VIDEO_SOURCE: dict[str, Any] = {
    "id": "1-video",
    "label": "Cam",
    "state": "live",
    "kind": "video",
    "width": 640,
    "height": 480,
    "pixelFormat": "bgr24",
    "frameRate": 30.0,
    "holders": ["source:2-video-320x240-bgr24-30fps", "track:3f2c"],
    "shmBytes": 100,
}
DAEMON_PROCESS = {"pid": 10, "role": "daemon", "rssBytes": 5}


def two_samples() -> tuple[StatsSample, StatsSample]:
    """Two seconds apart: 50 frames in 2 s of frame time at a nominal 30 fps."""
    first = StatsSample(
        0.0,
        {
            "sources": [{**VIDEO_SOURCE, "frames": 30, "newestNs": 1_000_000_000}],
            "processes": [{**DAEMON_PROCESS, "cpuSeconds": 1.0}],
        },
    )
    second = StatsSample(
        2.0,
        {
            "pid": 10,
            "counters": {"requests": 3},
            "sources": [{**VIDEO_SOURCE, "frames": 80, "newestNs": 3_000_000_000}],
            "processes": [{**DAEMON_PROCESS, "cpuSeconds": 1.5}],
            "sessions": [{"pid": 7, "name": "w", "uid": 0, "tracks": ["a", "b"]}],
        },
    )
    return first, second


def test_stats_rates_are_measured_between_two_reports() -> None:
    """fps from frames over the newest frames' own timestamps; drops where the
    source fell behind its nominal rate; CPU % from CPU seconds over wall time."""
    first, second = two_samples()
    report = stats_report(first, second)
    [source] = report["sources"]
    assert (source["rate"], source["drops"], source["format"]) == (25.0, 10, "640x480 bgr24")
    assert report["processes"][0]["cpuPercent"] == 25.0
    assert report["consumers"][0]["tracks"] == 2
    assert stats_report(None, second)["sources"][0]["rate"] is None


def test_a_source_row_lists_its_holders_and_counts_them() -> None:
    """The daemon's holder names pass through to ``--json``; the count is the
    live view's HOLDERS column."""
    first, second = two_samples()
    [source] = stats_report(first, second)["sources"]
    assert source["holders"] == ["source:2-video-320x240-bgr24-30fps", "track:3f2c"]
    assert source["consumers"] == 2
    text = render_stats(stats_report(first, second), Path("/run/x"))
    header, row = text.split("\nSOURCES\n")[1].splitlines()[:2]
    assert header.split()[-1] == "HOLDERS" and row.split()[-1] == "2"


def test_a_source_without_new_frames_has_rate_zero_and_no_drops() -> None:
    _, second = two_samples()
    still = StatsSample(
        4.0, {"sources": [{**VIDEO_SOURCE, "frames": 80, "newestNs": 3_000_000_000}]}
    )
    [source] = stats_report(second, still)["sources"]
    assert (source["rate"], source["drops"]) == (0.0, None)


def test_the_live_view_shows_each_section() -> None:
    first, second = two_samples()
    text = render_stats(stats_report(first, second), Path("/run/x"))
    assert text.startswith("mediabroker pid 10 on /run/x (requests 3)\n")
    assert "25.0 fps" in text and "0.0 MiB" in text
    consumers = text.split("\nCONSUMERS\n")[1].splitlines()
    assert consumers[0].split() == ["PID", "NAME", "USER", "TRACKS", "DELIVERED", "DISCARDED"]
    assert consumers[1].split() == ["7", "w", pwd.getpwuid(0).pw_name, "2", "-", "-"]
    empty = render_stats(stats_report(None, StatsSample(0.0, {"pid": 1})), Path("/run/x"))
    assert empty.count("(none)\n") == 2  # no sources, no consumers


# -- against a daemon ------------------------------------------------------------------


def test_devices_prints_a_table_and_json(daemon: Daemon) -> None:
    table = on(daemon, "devices")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["KIND", "LABEL", "ID", "CAPABILITIES"]
    for device in fake_devices():
        [row] = [line for line in lines if device.device_id in line]
        assert row.startswith(device.kind) and device.label in row
    assert "1x1..1920x1080, 1..30 fps, bgr24/rgb24/gray8" in table.stdout
    assert "8000..48000 Hz, 1..2 ch" in table.stdout
    listed = json.loads(on(daemon, "devices", "--json").stdout)
    assert [d["kind"] for d in listed] == ["audioinput", "videoinput"]
    assert listed[1]["capabilities"]["width"] == {"min": 1, "max": 1920}


def test_stats_json_reports_sources_consumers_and_processes(daemon: Daemon) -> None:
    """Needs the daemon's stats reply to name each source's holders."""
    with MediaDevices(daemon.run_dir, name="stats-watcher") as devices:
        track = devices.getUserMedia({"video": {"width": 320, "height": 240}}).getVideoTracks()[0]
        track.read(timeout=5)
        result = on(daemon, "stats", "--json", "--interval", "0.5")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        track.stop()
    [source] = report["sources"]
    assert source["device"] == "Fake camera (test pattern)" and source["format"] == "320x240 bgr24"
    assert source["rate"] > 0 and source["frames"] > 0 and isinstance(source["drops"], int)
    assert source["shmBytes"] > 320 * 240 * 3 * 8 and source["consumers"] == 1
    assert source["holders"] == [f"track:{track.id}"]
    [watcher] = [c for c in report["consumers"] if c["name"] == "stats-watcher"]
    assert (watcher["tracks"], watcher["uid"]) == (1, os.getuid())
    assert watcher["delivered"] >= 1 and watcher["discarded"] >= 0  # from its heartbeats
    assert watcher["user"] == pwd.getpwuid(os.getuid()).pw_name
    roles = {p["role"] for p in report["processes"]}
    assert "daemon" in roles and f"capture {source['id']}" in roles
    assert all(p["rssBytes"] > 0 and p["cpuPercent"] >= 0 for p in report["processes"])
    assert report["daemon"]["pid"] == daemon.pid


def test_stats_live_view_refreshes(daemon: Daemon) -> None:
    result = on(daemon, "stats", "--count", "2", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    for section in ("SOURCES", "CONSUMERS", "PROCESSES"):
        assert result.stdout.count(f"\n{section}\n") == 2, result.stdout
    assert f"mediabroker pid {daemon.pid} on {daemon.run_dir}" in result.stdout


def test_the_daemons_measured_rate_and_drop_totals_come_first() -> None:
    """A reply with the daemon's own figures: its rate as it is, drops as the
    difference of its totals (not re-estimated from the nominal rate)."""
    first, second = two_samples()
    first.stats["sources"][0]["droppedFrames"] = 4
    second.stats["sources"][0].update(measuredRate=29.5, droppedFrames=6)
    [source] = stats_report(first, second)["sources"]
    assert (source["rate"], source["drops"]) == (29.5, 2)
    assert stats_report(None, second)["sources"][0]["rate"] == 29.5
