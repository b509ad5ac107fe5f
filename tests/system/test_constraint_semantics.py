"""What a request gets from a device that runs already, or ran a moment ago
(issue 12), against a real daemon on fake devices.

* A request the device can meet in some mode succeeds: a camera running at
  1280x720 for one track is re-opened at a mode covering a request for
  ``{"width": {"min": 1920}}``, and the first track, in this process or in
  another, moves onto a derived source of its old size and still receives
  frames (README, "How it works": sources).
* A request no mode can meet names the property that cannot be met and
  what the device offers, and with a required deviceId never another device.
* A source whose last track stopped binds nothing while it lingers in its
  idle grace: the next request gets the mode it would get from an idle
  camera (``resizeMode: "none"`` included).
* getSupportedConstraints() lists exactly the names the daemon accepts.

The fake camera runs in any mode up to 1920x1080 at 30 fps; its default is
640x480.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_nothing_left
from mediabroker.constraint_parsing import parse_track_constraints
from mediabroker.constraints import NOT_FOR_DEVICE_SELECTION, PROPERTIES_OF_KIND
from mediastream import (
    ConstraintTypeError,
    MediaDevices,
    MediaStreamTrack,
    OverconstrainedError,
    VideoFrame,
)
from mediastream.lint import unknown_constraints
from support import ClientProcess, Daemon

HD = {"width": {"exact": 1280}, "height": {"exact": 720}}
FRESH_READS = 60  # reads to wait for a frame captured after a moment: 2 s at 30 fps
GRACE_S = 30.0  # an idle grace no test outlasts: sources linger through the test


@pytest.fixture
def lingering(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose idle sources linger for `GRACE_S`; it must stop cleanly
    and leave nothing behind."""
    daemon = Daemon(tmp_path / "run", idle_close=GRACE_S)
    try:
        daemon.wait_ready()
        yield daemon
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def camera_id(devices: MediaDevices) -> str:
    return next(d.deviceId for d in devices.enumerateDevices() if d.kind == "videoinput")


def video(devices: MediaDevices, constraints: dict[str, Any]) -> MediaStreamTrack:
    return devices.getUserMedia({"video": constraints}).getVideoTracks()[0]


def fresh_frame(track: MediaStreamTrack, after: float) -> VideoFrame:
    """The first frame ``track`` reads that was captured after ``after``
    (CLOCK_MONOTONIC s, the same clock in every process)."""
    for _ in range(FRESH_READS):
        frame = track.read(timeout=5.0)
        assert isinstance(frame, VideoFrame)
        if frame.timestamp > after:
            return frame
    raise AssertionError(f"no frame captured after {after:.3f} in {FRESH_READS} reads")


def source_modes(devices: MediaDevices) -> dict[str, list[str]]:
    """Each source's size, with its holders (``source:<id>`` for derived ones)."""
    sources = devices.broker_stats()["sources"]
    return {f"{s['width']}x{s['height']}": s["holders"] for s in sources if s["kind"] == "video"}


def assert_reopened_covering(devices: MediaDevices) -> None:
    """The camera runs at 1920x1080, and the 1280x720 source derives from it."""
    modes = source_modes(devices)
    assert set(modes) == {"1920x1080", "1280x720"}, modes
    assert any(h.startswith("source:") for h in modes["1920x1080"]), modes


def test_a_larger_request_reopens_the_camera_for_a_track_here(daemon: Daemon) -> None:
    """1. A track at exactly 1280x720 opens the camera in that mode.
    2. {"width": {"min": 1920}} succeeds (it was OverconstrainedError naming
       deviceId): 1920x1080, the camera's own frames (resizeMode "none").
    3. The camera now runs at 1920x1080; the first track reads a source
       derived from it, at its own size, with frames captured after step 2."""
    with MediaDevices(daemon.run_dir) as devices:
        first = video(devices, HD)
        assert first.read(timeout=5.0) is not None
        larger = video(devices, {"width": {"min": 1920}})
        moved_at = time.monotonic()
        settings = larger.getSettings()
        assert (settings["width"], settings["height"]) == (1920, 1080), settings
        assert settings["resizeMode"] == "none" and settings["deviceId"] == camera_id(devices)
        assert fresh_frame(larger, moved_at).data.shape == (1080, 1920, 3)
        assert_reopened_covering(devices)
        assert fresh_frame(first, moved_at).data.shape == (720, 1280, 3)
        assert (first.getSettings()["width"], first.getSettings()["height"]) == (1280, 720)
        larger.stop()
        first.stop()


def test_a_larger_request_reopens_the_camera_for_a_track_in_another_process(
    daemon: Daemon,
) -> None:
    """1. Another process holds a track at exactly 1280x720 and reads it.
    2. Here, {"width": {"min": 1920}} with the camera's deviceId required
       succeeds at 1920x1080, with a second camera plugged in that must not
       be chosen or named.
    3. The other process keeps reading 1280x720 frames captured after step 2."""
    client = ClientProcess("on-demand", daemon.run_dir, 1280, 720)
    try:
        assert client.next()["event"] == "ready"
        with MediaDevices(daemon.run_dir) as devices:
            other = devices.add_fake_device("videoinput", "Second camera")
            wanted = {"deviceId": {"exact": camera_id(devices)}, "width": {"min": 1920}}
            larger = video(devices, wanted)
            moved_at = time.monotonic()
            settings = larger.getSettings()
            assert settings["deviceId"] != other
            assert (settings["width"], settings["height"]) == (1920, 1080), settings
            assert_reopened_covering(devices)
            for _ in range(FRESH_READS):
                client.release()  # one read, one line
                line = client.next()
                if float(str(line["timestamp"])) > moved_at:
                    break
            else:
                raise AssertionError(f"the other process saw no frame after the move: {line}")
            assert line["shape"] == [720, 1280, 3], line
            larger.stop()
        assert client.process.stdin is not None
        client.process.stdin.close()  # its loop ends: it stops its track and exits
        assert client.wait() == 0, client.stderr()
    finally:
        client.close()


@pytest.mark.parametrize(
    ("constraints", "failed", "offered"),
    [
        ({"frameRate": {"min": 500}}, "frameRate", "frameRate 1 to 30 fps"),
        ({"width": {"min": 5000}}, "width", "width 1 to 1920"),
        ({"height": {"exact": 2000}, "width": 640}, "height", "height 1 to 1080"),
        ({"pixelFormat": {"exact": "yuv420"}}, "pixelFormat", "pixelFormat one of 'bgr24'"),
    ],
    ids=["frameRate", "width", "height", "pixelFormat"],
)
def test_an_impossible_request_names_the_property_and_what_the_device_offers(
    daemon: Daemon, constraints: dict[str, Any], failed: str, offered: str
) -> None:
    """With the camera running at 1280x720 for another track and a second
    camera plugged in, each impossible request (alone, then with the first
    camera's deviceId required) names the property, never deviceId; its
    message says what the camera offers; with the deviceId required it
    names neither the other camera nor its id (it listed that camera's
    deviceId as "what it offers")."""
    with MediaDevices(daemon.run_dir) as devices:
        running = video(devices, HD)
        device_id = camera_id(devices)
        other = devices.add_fake_device("videoinput", "Second camera")
        for required in ({}, {"deviceId": {"exact": device_id}}):
            with pytest.raises(OverconstrainedError) as caught:
                video(devices, {**required, **constraints})
            message = str(caught.value)
            assert caught.value.constraint == failed, message
            assert offered in message and "Fake camera (test pattern)" in message, message
            if required:
                assert other not in message and "Second camera" not in message, message
        running.stop()


def test_a_device_id_no_device_has_names_device_id_and_no_device(daemon: Daemon) -> None:
    with MediaDevices(daemon.run_dir) as devices:
        ids = [d.deviceId for d in devices.enumerateDevices()]
        with pytest.raises(OverconstrainedError) as caught:
            video(devices, {"deviceId": {"exact": "no-such-camera"}, "frameRate": {"min": 500}})
        assert caught.value.constraint == "deviceId", caught.value
        assert "no device has deviceId" in str(caught.value)
        assert not any(i in str(caught.value) for i in ids), caught.value


@pytest.mark.parametrize(
    ("before", "size"),
    [
        ({"width": {"exact": 640}, "height": {"exact": 480}}, (1920, 1080)),
        ({"width": {"exact": 1920}, "height": {"exact": 1080}}, (640, 480)),
    ],
    ids=["smaller-then-larger", "larger-then-smaller"],
)
def test_a_stopped_camera_binds_no_request_during_its_idle_grace(
    lingering: Daemon, before: dict[str, Any], size: tuple[int, int]
) -> None:
    """1. A track in one mode reads a frame and stops; its source lingers
       (idle grace 30 s).
    2. A request for another size with resizeMode "none" required gets that
       size as the camera's own frames, as from an idle camera (640x480
       after 1920x1080 was refused: "the camera runs at 1920x1080 for other
       tracks"), and the lingering source is closed at once, not kept as a
       derived one."""
    width, height = size
    with MediaDevices(lingering.run_dir) as devices:
        track = video(devices, before)
        assert track.read(timeout=5.0) is not None
        track.stop()
        native = {"exact": "none"}
        track = video(devices, {"width": width, "height": height, "resizeMode": native})
        settings = track.getSettings()
        assert (settings["width"], settings["height"], settings["resizeMode"]) == (*size, "none")
        assert fresh_frame(track, 0.0).data.shape == (height, width, 3)
        assert list(source_modes(devices)) == [f"{width}x{height}"]
        track.stop()


def test_idle_derived_sources_bind_no_request_either(lingering: Daemon) -> None:
    """1. 1280x720, then 1920x1080: the camera re-opens, the 1280x720 source
       derives from it. Both tracks stop; all their sources linger.
    2. 640x480 with resizeMode "none" required: the camera opens in that
       mode (the idle 1280x720 source held the 1920x1080 one, which made it
       look in use: the request was derived from it and refused)."""
    with MediaDevices(lingering.run_dir) as devices:
        first = video(devices, HD)
        second = video(devices, {"width": {"exact": 1920}, "height": {"exact": 1080}})
        assert_reopened_covering(devices)
        first.stop()
        second.stop()
        vga = {"width": {"exact": 640}, "height": {"exact": 480}, "resizeMode": {"exact": "none"}}
        track = video(devices, vga)
        assert track.getSettings()["resizeMode"] == "none"
        assert fresh_frame(track, 0.0).data.shape == (480, 640, 3)
        assert list(source_modes(devices)) == ["640x480"]
        track.stop()


def _kept_by_daemon(name: str) -> bool:
    """Whether the daemon's constraint parser keeps ``name`` for a track of
    either kind (a TypeError for its value is knowing it too); dropped names
    are ignored as the spec says."""
    for kind in ("video", "audio"):
        try:
            if name in parse_track_constraints(kind, {name: {}}):
                return name not in NOT_FOR_DEVICE_SELECTION
        except ConstraintTypeError:
            return True
    return False


def test_supported_constraints_are_exactly_the_names_the_daemon_accepts(
    shared_devices: MediaDevices,
) -> None:
    """getSupportedConstraints() against the daemon's own vocabulary
    (`mediabroker.constraints.PROPERTIES_OF_KIND`), against what its parser
    keeps of a request, and against the names the daemon logs as unknown
    (`mediastream.lint`). backgroundBlur is parsed only to refuse requiring
    it, so it is not claimed."""
    supported = set(shared_devices.getSupportedConstraints())
    assert supported == PROPERTIES_OF_KIND["video"] | PROPERTIES_OF_KIND["audio"]
    probe = supported | PROPERTIES_OF_KIND["video"] | PROPERTIES_OF_KIND["audio"]
    probe |= {"fps", "pixel_format", "volume", "backgroundBlur"}
    assert {name for name in probe if _kept_by_daemon(name)} == supported
    request: dict[str, Any] = {kind: {n: {} for n in supported} for kind in ("video", "audio")}
    assert unknown_constraints(request) == []
