"""The ``mediabroker`` client commands against a real daemon: devices, stats,
snapshot, record, fake-device; and their help, errors and exit statuses."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from mediabroker.capture.fake import TONE_HZ, verify_pattern
from mediabroker.cli.commands import StatsSample, find_device, stats_report
from mediabroker.devices.catalog import fake_devices
from mediabroker.errors import CommandError
from mediastream import InputDeviceInfo, MediaDeviceInfo, MediaDevices
from support import Daemon, run_mediabroker

COMMANDS = ("serve", "fake-device", "devices", "stats", "snapshot", "record", "demo")


mediabroker = run_mediabroker


def on(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """A client command against ``daemon``; fails the test on a traceback."""
    result = mediabroker(*args, "--run-dir", str(daemon.run_dir))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def infos() -> list[MediaDeviceInfo]:
    return [
        InputDeviceInfo(d.device_id, d.kind, d.label, d.group_id, d.capabilities)
        for d in fake_devices()
    ]


# -- help ------------------------------------------------------------------------


def test_help_lists_every_command_with_a_summary() -> None:
    result = mediabroker("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command} " in result.stdout, command
    assert "exit status: 0 done, 1 failed, 2 usage or configuration error" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(command: str) -> None:
    result = mediabroker(command, "--help")
    assert result.returncode == 0 and f"usage: mediabroker {command}" in result.stdout


# -- choosing a device -------------------------------------------------------------


def test_a_device_is_named_by_id_prefix_label_or_kind_word() -> None:
    listed = infos()
    microphone, camera = listed
    assert find_device(listed, camera.deviceId) == camera
    assert find_device(listed, camera.deviceId[:6]) == camera
    assert find_device(listed, "TEST PATTERN") == camera
    assert find_device(listed, "camera") == camera
    assert find_device(listed, "mic") == microphone
    assert find_device(listed, "Fake", "audioinput") == microphone
    with pytest.raises(CommandError, match="names 2 devices") as ambiguous:
        find_device(listed, "fake")
    assert ambiguous.value.status == 2
    with pytest.raises(CommandError, match="no camera matches 'tone'"):
        find_device(listed, "tone", "videoinput")


# -- stats arithmetic ------------------------------------------------------------------


def test_stats_rates_are_measured_between_two_reports() -> None:
    """fps from frames over the newest frames' own timestamps; drops where the
    source fell behind its nominal rate; CPU % from CPU seconds over wall time."""
    video = {
        "id": "1-video",
        "kind": "video",
        "width": 640,
        "height": 480,
        "pixelFormat": "bgr24",
        "frameRate": 30.0,
        "refs": 2,
        "shmBytes": 100,
    }
    daemon = {"pid": 10, "role": "daemon", "rssBytes": 5}
    first = StatsSample(
        0.0,
        {
            "sources": [{**video, "frames": 30, "newestNs": 1_000_000_000}],
            "processes": [{**daemon, "cpuSeconds": 1.0}],
        },
    )
    second = StatsSample(
        2.0,
        {
            "sources": [{**video, "frames": 80, "newestNs": 3_000_000_000}],
            "processes": [{**daemon, "cpuSeconds": 1.5}],
            "sessions": [{"pid": 7, "name": "w", "uid": 0, "tracks": ["a", "b"]}],
        },
    )
    report = stats_report(first, second)
    [source] = report["sources"]
    assert (source["rate"], source["drops"], source["format"]) == (25.0, 10, "640x480 bgr24")
    assert report["processes"][0]["cpuPercent"] == 25.0
    assert report["consumers"][0]["tracks"] == 2
    assert stats_report(None, second)["sources"][0]["rate"] is None


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


def test_snapshot_writes_the_frame_exactly(daemon: Daemon, tmp_path: Path) -> None:
    """PNG is lossless: the file holds an intact test-pattern frame."""
    output = tmp_path / "frame.png"
    result = on(
        daemon, "snapshot", "camera", "-o", str(output), "--width", "320", "--height", "240"
    )
    assert result.returncode == 0, result.stderr
    assert "(320x240 bgr24) of Fake camera (test pattern)" in result.stdout
    image = cv2.imread(str(output))
    assert image.shape == (240, 320, 3)
    assert verify_pattern(image)


def test_snapshot_of_a_microphone_is_a_usage_error(daemon: Daemon, tmp_path: Path) -> None:
    result = on(daemon, "snapshot", "microphone", "-o", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert "no camera matches 'microphone'" in result.stderr
    assert "'Fake camera (test pattern)'" in result.stderr  # what there is


@pytest.mark.parametrize(("suffix", "codec"), [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_record_video_keeps_real_time(
    daemon: Daemon, tmp_path: Path, suffix: str, codec: str
) -> None:
    """One second at 30 fps is 30 frames of the requested size, whatever the
    reader missed; the progress line goes to stderr."""
    output = tmp_path / f"clip{suffix}"
    result = on(
        daemon, "record", "camera", "-o", str(output), "--duration", "1", "--width", "160",
        "--height", "120",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "recording Fake camera (test pattern):" in result.stderr
    assert "wrote 30 frames (160x120 at 30 fps" in result.stderr
    assert codec.encode() in output.read_bytes()  # the codec tag in the container
    capture = cv2.VideoCapture(str(output))
    try:
        frames = []
        while (frame := capture.read()[1]) is not None:
            frames.append(frame)
    finally:
        capture.release()
    assert len(frames) == 30 and frames[0].shape == (120, 160, 3)


def test_record_audio_writes_the_tone(daemon: Daemon, tmp_path: Path) -> None:
    output = tmp_path / "tone.wav"
    result = on(daemon, "record", "microphone", "-o", str(output), "--duration", "0.5")
    assert result.returncode == 0, result.stderr
    assert "wrote 0.5 s (48000 Hz, 1 channel(s), 16-bit)" in result.stderr
    with wave.open(str(output), "rb") as file:
        assert (file.getnchannels(), file.getsampwidth(), file.getframerate()) == (1, 2, 48000)
        assert file.getnframes() == 24000
        samples = np.frombuffer(file.readframes(24000), "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 48000 / len(samples)
    assert abs(peak_hz - TONE_HZ) < 4


@pytest.mark.parametrize("name", ["clip.mkv", "clip"])
def test_record_refuses_a_format_it_cannot_write(daemon: Daemon, tmp_path: Path, name: str) -> None:
    result = on(daemon, "record", "camera", "-o", str(tmp_path / name))
    assert result.returncode == 2 and "use .avi or .mp4 for a camera" in result.stderr


def test_stats_json_reports_sources_consumers_and_processes(daemon: Daemon) -> None:
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


def test_fake_device_plugs_and_unplugs_at_run_time(daemon: Daemon) -> None:
    added = on(daemon, "fake-device", "add", "--kind", "videoinput", "--label", "Door cam")
    assert added.returncode == 0, added.stderr
    device_id = added.stdout.strip()
    assert "Door cam" in on(daemon, "devices").stdout
    removed = on(daemon, "fake-device", "remove", device_id[:8])
    assert removed.returncode == 0 and "removed 'Door cam'" in removed.stdout
    assert device_id not in on(daemon, "devices").stdout
    builtin = on(daemon, "fake-device", "remove", "test pattern")  # built-in fakes unplug too
    assert builtin.returncode == 0 and "Fake camera" not in on(daemon, "devices").stdout


def test_without_a_daemon_a_client_command_says_so_in_one_line(tmp_path: Path) -> None:
    result = mediabroker("devices", "--run-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.startswith("mediabroker: NotReadableError: no mediabroker daemon at")
    assert len(result.stderr.splitlines()) == 1
