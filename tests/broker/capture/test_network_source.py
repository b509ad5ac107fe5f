"""Network cameras as sources: real servers on loopback, real FFmpeg decoding.

An MJPEG-over-HTTP camera (`support.mjpeg_server`, in this process) and an
RTSP camera (GStreamer's RTSP server under the system python3,
`support.rtsp`) are read by a real daemon through ``--video-url``.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import assert_nothing_left
from mediabroker.capture.network import NetworkCamera
from mediabroker.errors import CaptureError
from mediastream import MediaDevices
from mediastream.frames import VideoFrame
from mediastream.ring import VideoFormat
from support import Daemon, run_mediabroker, wait_until
from support.mjpeg_server import MjpegServer
from support.rtsp import RtspServer, rtsp_available

PASSWORD = "pw-Zq81xK"  # looked for in every output: it must never show


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    with MjpegServer(320, 240, fps=20, password=PASSWORD) as server:
        yield server


def _daemon(tmp_path: Path, *urls: str, config: str = "") -> Daemon:
    args = [arg for url in urls for arg in ("--video-url", url)]
    daemon = Daemon(tmp_path / "run", *args, config=config)
    daemon.wait_ready()
    return daemon


def _stop(daemon: Daemon) -> None:
    assert daemon.terminate() == 0, daemon.log()
    assert_nothing_left(daemon)


def _camera(devices: MediaDevices, label_part: str, timeout: float = 15) -> str:
    """The deviceId of the camera whose label holds ``label_part``, once listed."""
    found = wait_until(
        lambda: [d for d in devices.enumerateDevices() if label_part in d.label],
        timeout,
        f"a camera labelled *{label_part}*",
        devices.enumerateDevices,
    )
    return found[0].deviceId


def test_an_mjpeg_camera_delivers_frames_of_its_size_and_a_derived_size(
    tmp_path: Path, mjpeg: MjpegServer
) -> None:
    """1. The URL is listed as a videoinput labelled from the URL, without
       the password, at the stream's size and its measured rate.
    2. getUserMedia gets 320x240 frames; a second track gets a derived 160x120.
    3. Neither the log, nor stats, nor ``mediabroker devices`` holds the password."""
    daemon = _daemon(tmp_path, mjpeg.url())
    try:
        with MediaDevices(daemon.run_dir) as devices:
            device_id = _camera(devices, f"127.0.0.1:{mjpeg.port}/video.mjpg (http)")
            info = next(d for d in devices.enumerateDevices() if d.deviceId == device_id)
            caps = info.getCapabilities()  # type: ignore[attr-defined]
            assert (caps["width"]["max"], caps["height"]["max"]) == (320, 240)
            assert caps["frameRate"]["max"] == pytest.approx(20, abs=3)  # measured by the probe
            exact = {"deviceId": {"exact": device_id}}
            native = devices.getUserMedia({"video": exact}).getVideoTracks()[0]
            frame = native.read(timeout=10)
            assert isinstance(frame, VideoFrame) and frame.data.shape == (240, 320, 3)
            small = {**exact, "width": {"exact": 160}, "height": {"exact": 120}}
            derived = devices.getUserMedia({"video": small}).getVideoTracks()[0]
            frame = derived.read(timeout=10)
            assert isinstance(frame, VideoFrame) and frame.data.shape == (120, 160, 3)
            stats = json.dumps(devices.broker_stats())
            listed = run_mediabroker("devices", "--json", "--run-dir", str(daemon.run_dir))
            assert listed.returncode == 0 and "video.mjpg (http)" in listed.stdout, listed
            native.stop()
            derived.stop()
        _stop(daemon)
        outputs = {"log": daemon.log(), "stats": stats, "mediabroker devices": listed.stdout}
        for name, text in outputs.items():
            assert PASSWORD not in text, f"the password is in the {name}"
        assert "admin:***@127.0.0.1" in daemon.log()
    finally:
        daemon.close()


def test_a_camera_that_drops_mutes_its_tracks_until_it_is_back(
    tmp_path: Path, mjpeg: MjpegServer
) -> None:
    """1. A track reads the MJPEG camera.
    2. The server stops (every connection closed): the track fires ``mute``
       and stays live; the source is not ended.
    3. The server comes back on the same port: the track fires ``unmute``
       and frames flow again, with new sequence numbers.
    4. The password shows nowhere in the log, the reconnects included."""
    daemon = _daemon(tmp_path, mjpeg.url())
    try:
        with MediaDevices(daemon.run_dir) as devices:
            device_id = _camera(devices, "video.mjpg")
            track = devices.getUserMedia({"video": {"deviceId": {"exact": device_id}}})
            track = track.getVideoTracks()[0]
            events: list[str] = []
            for name in ("mute", "unmute", "ended"):
                track.addEventListener(name, lambda event: events.append(event.type))
            before = track.read(timeout=10)
            assert isinstance(before, VideoFrame)
            seq = before.seq
            dropped = time.monotonic()
            mjpeg.stop()
            wait_until(
                lambda: "mute" in events, 10, "mute after the camera dropped", lambda: events
            )
            muted_s = time.monotonic() - dropped
            assert track.muted and track.readyState == "live"
            back = time.monotonic()
            mjpeg.start()
            wait_until(lambda: "unmute" in events, 20, "unmute once it is back", lambda: events)
            unmuted_s = time.monotonic() - back
            print(
                f"muted {muted_s:.2f} s after the drop, unmuted {unmuted_s:.2f} s after its return"
            )
            after = wait_until(lambda: track.read(timeout=1), 10, "a frame after the reconnect")
            assert isinstance(after, VideoFrame) and after.seq > seq
            assert events == ["mute", "unmute"], events
            track.stop()
        _stop(daemon)
        assert PASSWORD not in daemon.log()
    finally:
        daemon.close()


def test_a_url_that_never_answers_holds_up_no_other_device(
    tmp_path: Path, mjpeg: MjpegServer
) -> None:
    """1. The first URL is a socket that accepts connections and never says a
       word; the second is the MJPEG camera.
    2. The daemon starts at once, lists the fake camera at once, and lists
       the MJPEG camera within its own probe's time: the dead URL holds up
       neither. Every enumerateDevices answers fast.
    3. The dead URL is logged as not offered, once, and never listed."""
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead.listen(16)  # connections complete in the kernel; nobody answers
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/stream?password={PASSWORD}"
        started = time.monotonic()
        daemon = _daemon(tmp_path, dead_url, mjpeg.url())
        try:
            with MediaDevices(daemon.run_dir) as devices:
                assert time.monotonic() - started < 10
                slowest = 0.0

                def listed() -> list[str]:
                    nonlocal slowest
                    asked = time.monotonic()
                    labels = [d.label for d in devices.enumerateDevices()]
                    slowest = max(slowest, time.monotonic() - asked)
                    return labels

                assert any(label.startswith("Fake camera") for label in listed())
                wait_until(lambda: any("video.mjpg" in x for x in listed()), 10, "the MJPEG camera")
                assert slowest < 1.0, f"an enumerateDevices took {slowest:.2f} s"
                print(
                    f"slowest enumerateDevices with a dead URL configured: {slowest * 1e3:.1f} ms"
                )
                assert not any("/stream" in label for label in listed())
                wait_until(lambda: "is not offered" in daemon.log(), 15, "the dead URL's warning")
            _stop(daemon)
            log = daemon.log()
            assert PASSWORD not in log
            dead_lines = [x for x in log.splitlines() if "/stream" in x and "not offered" in x]
            assert len(dead_lines) == 1, dead_lines
        finally:
            daemon.close()


@pytest.mark.skipif(bool(rtsp_available()), reason=rtsp_available() or "available")
def test_an_rtsp_camera_delivers_frames_and_comes_back_after_a_restart(tmp_path: Path) -> None:
    """1. GStreamer's RTSP server streams 320x240 JPEG at 15 fps; the daemon
       lists it at that size and rate and a track gets 320x240 frames.
    2. The server is killed: the track is muted. A new server on the same
       port: unmuted, and frames flow."""
    frames = tmp_path / "frames"
    frames.mkdir()
    server = RtspServer(frames, 320, 240, fps=15).start()
    daemon = _daemon(tmp_path, server.url())
    try:
        with MediaDevices(daemon.run_dir) as devices:
            device_id = _camera(devices, "/live (rtsp)")
            info = next(d for d in devices.enumerateDevices() if d.deviceId == device_id)
            caps = info.getCapabilities()  # type: ignore[attr-defined]
            assert (caps["width"]["max"], caps["frameRate"]["max"]) == (320, 15)
            track = devices.getUserMedia({"video": {"deviceId": {"exact": device_id}}})
            track = track.getVideoTracks()[0]
            events: list[str] = []
            for name in ("mute", "unmute"):
                track.addEventListener(name, lambda event: events.append(event.type))
            frame = track.read(timeout=10)
            assert isinstance(frame, VideoFrame) and frame.data.shape == (240, 320, 3)
            server.stop()
            wait_until(lambda: "mute" in events, 10, "mute after the server died", lambda: events)
            server.start()
            wait_until(lambda: "unmute" in events, 25, "unmute once it is back", lambda: events)
            assert wait_until(lambda: track.read(timeout=1), 10, "a frame after the restart")
            track.stop()
        _stop(daemon)
    finally:
        daemon.close()
        server.stop()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
def test_an_hls_stream_is_a_camera_too(tmp_path: Path) -> None:
    """1. The ffmpeg command cuts a 320x240 15 fps clip into an HLS playlist,
       served over HTTP on loopback.
    2. The daemon lists it at that size and rate; a track gets its frames."""
    hls = tmp_path / "hls"
    hls.mkdir()
    clip = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-t", "4", "-c:v", "mpeg2video"]
    playlist = ["-f", "hls", "-hls_time", "1", "-hls_list_size", "0", str(hls / "index.m3u8")]
    subprocess.run(["ffmpeg", "-loglevel", "error", *clip, *playlist], check=True, timeout=60)
    handler = functools.partial(_Quiet, directory=str(hls))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            daemon = _daemon(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/index.m3u8")
            try:
                with MediaDevices(daemon.run_dir) as devices:
                    device_id = _camera(devices, "index.m3u8 (http)")
                    info = next(d for d in devices.enumerateDevices() if d.deviceId == device_id)
                    caps = info.getCapabilities()  # type: ignore[attr-defined]
                    assert (caps["width"]["max"], caps["frameRate"]["max"]) == (320, 15)
                    track = devices.getUserMedia({"video": {"deviceId": {"exact": device_id}}})
                    frame = track.getVideoTracks()[0].read(timeout=10)
                    assert isinstance(frame, VideoFrame) and frame.data.shape == (240, 320, 3)
                _stop(daemon)
            finally:
                daemon.close()
        finally:
            server.shutdown()
            thread.join(5)


def test_the_backend_decodes_in_place_scales_and_fails_fast_when_the_stream_stops(
    mjpeg: MjpegServer,
) -> None:
    """1. A NetworkCamera on the MJPEG camera decodes 320x240 frames straight
       into a 320x240 slot (no fallback copy).
    2. One with a 160x120 ring gets cropped and scaled frames.
    3. The server stops: the next read raises CaptureError, at once (the
       connection closed) or within the read timeout, never later."""
    slot = np.zeros((240, 320, 3), np.uint8)
    camera = NetworkCamera(VideoFormat(320, 240), 20.0, mjpeg.url(), read_timeout_ms=1000)
    small = NetworkCamera(VideoFormat(160, 120), 20.0, mjpeg.url(), read_timeout_ms=1000)
    try:
        for _ in range(3):
            camera.read_into(slot, 0)
        assert camera.stats.frames == 3 and camera.stats.fallback_copies == 0
        assert slot.any()
        view = np.zeros((120, 160, 3), np.uint8)
        small.read_into(view, 0)
        small.read_into(view, 1)
        assert small.stats.scaled_frames == 2 and view.any()
        mjpeg.stop()
        started = time.monotonic()
        with pytest.raises(CaptureError, match="the stream stopped"):
            for _ in range(100):  # what FFmpeg buffered comes first
                camera.read_into(slot, 0)
        assert time.monotonic() - started < 3
        assert PASSWORD not in repr(camera)
    finally:
        camera.close()
        small.close()
