"""Sources that fail say so once: bad files at start and at reload, FFmpeg's noise.

Real daemons, real files (written by OpenCV, or bytes that are no video),
real FFmpeg decoding in capture processes and probe children.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import assert_nothing_left
from mediastream import MediaDevices
from support import Daemon, child_env, wait_until
from support.videos import write_video

NOT_VIDEO = b"this is no video at all\n" * 400


def _labels(devices: MediaDevices) -> list[str]:
    return [d.label for d in devices.enumerateDevices()]


def _count(log: str, *parts: str) -> int:
    return sum(1 for line in log.splitlines() if all(part in line for part in parts))


def _damaged_video(path: Path) -> Path:
    """An MJPG AVI that opens, with one frame whose JPEG data is garbage:
    FFmpeg complains about it on every pass through the file."""
    write_video(path, 160, 120, frames=20)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = b"\xff\x00" * 200
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_file_logs_each_ffmpeg_complaint_once_then_a_summary(tmp_path: Path) -> None:
    """1. A daemon plays a damaged file; a track reads it until it looped 4
       times (FFmpeg complains on each pass).
    2. Each complaint is in the log once, as a warning of mediabroker.capture,
       and no raw FFmpeg line is.
    3. Once the capture process exits, one line per complaint says how often
       it repeated."""
    path = _damaged_video(tmp_path / "damaged.avi")
    daemon = Daemon(tmp_path / "run", "--video-file", str(path))
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            device_id = next(
                d.deviceId for d in devices.enumerateDevices() if d.label.startswith("damaged")
            )
            track = devices.getUserMedia({"video": {"deviceId": {"exact": device_id}}})
            track = track.getVideoTracks()[0]
            assert track.read(timeout=5) is not None

            def loops() -> float:
                sources = devices.broker_stats()["sources"]
                return max((s["capture"].get("loops", 0) for s in sources), default=0)

            wait_until(lambda: loops() >= 4, 20, "four passes through the file", loops)
            log = daemon.log()
            assert _count(log, "WARNING mediabroker.capture: capture[", "FFmpeg (mjpeg)") >= 1
            complaints = {
                line.split("FFmpeg (mjpeg): ")[1]
                for line in log.splitlines()
                if "FFmpeg (mjpeg): " in line
            }
            for complaint in complaints:
                assert _count(log, f"FFmpeg (mjpeg): {complaint}") == 1, (complaint, log)
            assert _count(log, "[mjpeg @ 0x") == 0, "a raw FFmpeg line reached the log"
            track.stop()
            wait_until(lambda: "repeated" in daemon.log(), 10, "the summary at exit", daemon.log)
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
        summaries = [x for x in daemon.log().splitlines() if "(repeated" in x]
        assert summaries and all("FFmpeg (mjpeg)" in x for x in summaries), summaries
        assert all("in the last" in x for x in summaries)
    finally:
        daemon.close()


def test_bad_files_at_start_warn_once_each_and_are_offered_once_readable(tmp_path: Path) -> None:
    """1. ``--video-file`` names a file that is no video and one that does not
       exist: the daemon starts anyway, with the fake devices.
    2. Each is logged once, saying what is wrong and that it will be offered.
    3. The missing file appears (a real video): it is listed; the other's
       warning is still there once (scans went on meanwhile).
    4. The bad file is replaced by a real video: listed, and the log says it
       is readable again."""
    bad, missing = tmp_path / "bad.mp4", tmp_path / "later.avi"
    bad.write_bytes(NOT_VIDEO)
    daemon = Daemon(tmp_path / "run", "--video-file", str(bad), "--video-file", str(missing))
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            assert not any(x.startswith(("bad", "later")) for x in _labels(devices))
            log = daemon.log()
            assert _count(log, "WARNING", f"{bad} is not offered", "moov atom not found") == 1
            assert _count(log, "WARNING", f"{missing} is not offered: it does not exist") == 1
            assert _count(log, "it will be once it is a readable video") == 2
            write_video(missing, 160, 120, frames=5)
            wait_until(lambda: "later.avi (video file)" in _labels(devices), 10, "later.avi")
            assert _count(daemon.log(), f"{bad} is not offered") == 1
            write_video(tmp_path / "good.mp4", 160, 120, frames=5).replace(bad)
            wait_until(lambda: "bad.mp4 (video file)" in _labels(devices), 10, "bad.mp4")
            assert _count(daemon.log(), f"video file {bad} is readable again") == 1
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def test_a_reload_treats_bad_sources_as_the_start_does(tmp_path: Path) -> None:
    """1. A daemon serves a good file from its configuration.
    2. The file now names a missing file and a non-video file; SIGHUP: the
       reload is taken (not refused), the good file is withdrawn, each bad
       one is logged once, and the fake camera serves on.
    3. A URL FFmpeg cannot read (ftp://) is a mistake at reload, as at start:
       the reload is refused, with the password hidden; and ``serve`` with it
       exits with status 2, saying why, password hidden too."""
    good = write_video(tmp_path / "good.avi", 160, 120, frames=5)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(NOT_VIDEO)
    daemon = Daemon(tmp_path / "run", config=f'[[devices.files]]\npath = "{good}"\n')
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            assert "good.avi (video file)" in _labels(devices)
            daemon.config_path.write_text(
                f'[[devices.files]]\npath = "{tmp_path / "gone.avi"}"\n'
                f'[[devices.files]]\npath = "{bad}"\n'
            )
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_notification("RELOADING=1", 10)
            daemon.wait_notification("READY=1", 10)
            wait_until(lambda: "good.avi (video file)" not in _labels(devices), 10, "withdrawn")
            log = daemon.log()
            assert "reload refused" not in log
            assert _count(log, "gone.avi is not offered: it does not exist") == 1
            assert _count(log, f"{bad} is not offered") == 1
            assert devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)

            daemon.config_path.write_text("[[devices.network]]\nurl = 'ftp://me:hunter22@cam/x'\n")
            daemon.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload refused" in daemon.log(), 10, "the refusal", daemon.log)
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
        assert "hunter22" not in daemon.log()
    finally:
        daemon.close()
    url_args = ["--video-url", "ftp://me:hunter22@cam/x", "--run-dir", str(tmp_path / "run2")]
    serve = subprocess.run(
        [sys.executable, "-m", "mediabroker", "serve", "--no-hardware", *url_args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert serve.returncode == 2, serve
    assert "ftp://me:***@cam/x" in serve.stderr and "hunter22" not in serve.stderr, serve.stderr
