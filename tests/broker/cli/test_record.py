"""``mediabroker record`` as a service runs it, against a real daemon and its
fake camera: stopped by a signal, segmented, in H.264, with its counts and
its progress line. Files are read back by OpenCV and by ffprobe (Debian's
``ffmpeg`` package, which scripts/test installs).

Recording for a while is what these tests are about, so they wait for
time (``RECORD_S``) where others would wait for a condition.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from support import Daemon, child_env

RECORD_S = 2.0  # how long a recording runs before it is stopped
FPS = 30
SIZE = ("--width", "320", "--height", "240")
WROTE = re.compile(r"wrote (\d+) frames \(.*?(\d+) repeated, (\d+) dropped\)")


def _required(found: bool, what: str, install: str) -> None:
    """Skip without ``what`` on a developer machine; fail in CI, where
    scripts/test installs it (a CI run that skipped it would look green)."""
    if found:
        return
    reason = f"{what} is not installed ({install})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def ffprobe() -> str:
    path = shutil.which("ffprobe")
    _required(path is not None, "ffprobe", "apt-get install -y ffmpeg")
    assert path is not None
    return path


@pytest.fixture
def pyav() -> None:
    found = importlib.util.find_spec("av") is not None
    _required(found, "PyAV, the record extra,", "pip install -e '.[record]'")


class Recorder:
    """``mediabroker record`` in a process of its own, its stdout followed."""

    def __init__(self, daemon: Daemon, *args: str, stdout: int = subprocess.PIPE) -> None:
        command = [sys.executable, "-m", "mediabroker", "record", "--run-dir", str(daemon.run_dir)]
        self.process = subprocess.Popen(
            [*command, *args],
            env=child_env(),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_started(self, timeout: float = 15.0) -> float:
        """Block until the recorder says it records (its first frame is
        written); return that moment (time.monotonic)."""
        line = self._line(timeout)
        assert line.startswith("recording "), line + self._rest()
        return time.monotonic()

    def _line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"no line from the recorder in {timeout:g} s"
        return self.process.stdout.readline()

    def _rest(self) -> str:
        self.process.kill()
        out, err = self.process.communicate(timeout=10)
        return f"\nstdout: {out}\nstderr: {err}"

    def stop(self, number: int, timeout: float = 20.0) -> tuple[int, str, str]:
        """Send ``number``; return the exit status, stdout and stderr."""
        self.process.send_signal(number)
        return self.finish(timeout)

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        assert "Traceback" not in err, err
        return self.process.returncode, out, err

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    started: list[Recorder] = []
    yield started
    for recorder in started:
        recorder.close()


def probe(ffprobe: str, path: Path) -> dict[str, str]:
    """ffprobe's view of the video stream, every frame decoded and counted."""
    result = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames,r_frame_rate,pix_fmt,width,height", "-of", "json",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stream: dict[str, str] = json.loads(result.stdout)["streams"][0]
    return stream


def opencv_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.read()[0]:
            count += 1
        return count
    finally:
        capture.release()


def summary(out: str) -> tuple[int, int, int]:
    """Frames, repeated, dropped from the recorder's summary line."""
    match = WROTE.search(out)
    assert match, out
    return int(match[1]), int(match[2]), int(match[3])


def assert_real_time(frames: int, seconds: float) -> None:
    """The right count for ``seconds`` at 30 fps: within 1 frame a second."""
    assert abs(frames - FPS * seconds) <= seconds + 1, (frames, seconds)


@pytest.mark.parametrize(
    ("number", "name", "options", "codec"),
    [
        (signal.SIGTERM, "clip.mp4", ("--codec", "mpeg4"), "mpeg4"),
        (signal.SIGTERM, "clip.avi", (), "mjpeg"),
        (signal.SIGINT, "clip.mp4", ("--codec", "mpeg4"), "mpeg4"),
        (signal.SIGTERM, "clip.mkv", (), "h264"),
        (signal.SIGINT, "clip.mp4", (), "h264"),
    ],
    ids=["sigterm-mpeg4", "sigterm-mjpeg", "sigint-mpeg4", "sigterm-h264-mkv", "sigint-h264"],
)
def test_a_stop_signal_finishes_the_file(
    request: pytest.FixtureRequest,
    daemon: Daemon,
    tmp_path: Path,
    ffprobe: str,
    recorders: list[Recorder],
    number: int,
    name: str,
    options: tuple[str, ...],
    codec: str,
) -> None:
    """1. Record with no --duration. 2. Stop it with the signal after
    RECORD_S. 3. It exits 0 saying what it wrote and why it stopped. 4.
    OpenCV and ffprobe read that many frames, the real time's worth."""
    if codec == "h264":
        request.getfixturevalue("pyav")
    output = tmp_path / name
    recorder = Recorder(daemon, "camera", "-o", str(output), *SIZE, *options)
    recorders.append(recorder)
    started = recorder.wait_started()
    time.sleep(RECORD_S)  # how long it records: the scenario, not a wait for something
    stopped = time.monotonic()
    status, out, err = recorder.stop(number)
    assert status == 0, out + err
    frames, _, _ = summary(out)
    assert f"stopped by {signal.Signals(number).name}" in out
    assert f"to {output} (" in out
    assert_real_time(frames, stopped - started)
    stream = probe(ffprobe, output)
    assert (stream["codec_name"], int(stream["nb_read_frames"])) == (codec, frames)
    assert (stream["width"], stream["height"]) == (320, 240)
    assert opencv_frames(output) == frames


def test_h264_through_pyav(
    daemon: Daemon, tmp_path: Path, ffprobe: str, pyav: None, recorders: list[Recorder]
) -> None:
    """1. .mp4 records H.264 by default when PyAV is installed: yuv420p at
    the file's rate, a fragmented MP4 (moof boxes). 2. A recorder killed
    with SIGKILL, which finishes nothing, leaves a file ffprobe still reads
    up to its last fragment (a keyframe a second)."""
    output = tmp_path / "clip.mp4"
    result = run_record(daemon, "-o", str(output), "--duration", "1", *SIZE)
    assert "wrote 30 frames (320x240 at 30 fps, H.264, 1.0 s;" in result.stdout
    stream = probe(ffprobe, output)
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert (int(stream["nb_read_frames"]), stream["r_frame_rate"]) == (30, "30/1")
    assert b"moof" in output.read_bytes()

    killed = tmp_path / "killed.mp4"
    recorder = Recorder(daemon, "camera", "-o", str(killed), *SIZE)
    recorders.append(recorder)
    recorder.wait_started()
    time.sleep(RECORD_S + 0.5)  # long enough for a keyframe fragment: the scenario
    recorder.process.kill()
    recorder.process.wait(10)
    assert int(probe(ffprobe, killed)["nb_read_frames"]) >= FPS  # at least the first second


def run_record(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mediabroker", "record", "--run-dir", str(daemon.run_dir),
         "camera", *args],
        env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


def test_quality_bitrate_and_fps(daemon: Daemon, tmp_path: Path, ffprobe: str, pyav: None) -> None:
    """--quality 90 gives a larger file than --quality 10 (H.264, and
    Motion JPEG); --bitrate is honoured roughly; --fps 10 has the daemon
    drop frames to 10 fps, so the file has 10 frames a second and no drops."""
    sizes = {}
    for name, options in {
        "low.mp4": ("--quality", "10"),
        "high.mp4": ("--quality", "90"),
        "low.avi": ("--quality", "10"),
        "high.avi": ("--quality", "90"),
        "slow.mp4": ("--bitrate", "100k", "--fps", "10"),
    }.items():
        run_record(daemon, "-o", str(tmp_path / name), "--duration", "1", *SIZE, *options)
        sizes[name] = (tmp_path / name).stat().st_size
    assert sizes["low.mp4"] < sizes["high.mp4"] and sizes["low.avi"] < sizes["high.avi"]
    assert sizes["slow.mp4"] < 100_000 / 8 * 3  # 100 kbit/s for 1 s, with room for the start
    stream = probe(ffprobe, tmp_path / "slow.mp4")
    assert (int(stream["nb_read_frames"]), stream["r_frame_rate"]) == (10, "10/1")


def test_segments_rotate_and_old_ones_are_removed(
    daemon: Daemon, tmp_path: Path, ffprobe: str
) -> None:
    """1. An earlier run left cam-00003.avi. 2. Record 2.5 s in 0.5 s
    segments, keeping 2: the new files are numbered 4 to 8, each 15 frames,
    each announced as it closes. 3. Only the newest two remain; the earlier
    run's file and segments 4 to 6 were removed, each said so."""
    (tmp_path / "cam-00003.avi").write_bytes(b"an earlier run")
    output = tmp_path / "cam.avi"
    result = run_record(
        daemon, "-o", str(output), "--duration", "2.5", "--segment", "0.5", "--keep", "2", *SIZE
    )
    for index in range(4, 9):
        assert f"wrote cam-{index:05d}.avi: 15 frames, 0.5 s, " in result.stdout
    for index in range(3, 7):
        assert f"removed cam-{index:05d}.avi (--keep 2)" in result.stdout
    assert "to 5 files, cam-00004.avi to cam-00008.avi in" in result.stdout
    assert sorted(p.name for p in tmp_path.glob("cam*")) == ["cam-00007.avi", "cam-00008.avi"]
    for name in ("cam-00007.avi", "cam-00008.avi"):
        assert int(probe(ffprobe, tmp_path / name)["nb_read_frames"]) == 15
        assert opencv_frames(tmp_path / name) == 15


def test_repeated_and_dropped_frames_are_counted(
    daemon: Daemon, tmp_path: Path, ffprobe: str, recorders: list[Recorder]
) -> None:
    """1. A recorder records. 2. It is frozen (SIGSTOP) for a second, as a
    machine under load would starve it, then let go. 3. Stopped, it reports
    the frames it never read as dropped and the slots they leave as
    repeated, and the file still keeps real time."""
    output = tmp_path / "clip.avi"
    recorder = Recorder(daemon, "camera", "-o", str(output), *SIZE)
    recorders.append(recorder)
    started = recorder.wait_started()
    time.sleep(0.5)  # the scenario's timeline: record, freeze 1 s, record
    recorder.process.send_signal(signal.SIGSTOP)
    time.sleep(1.0)
    recorder.process.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    stopped = time.monotonic()
    status, out, err = recorder.stop(signal.SIGTERM)
    assert status == 0, out + err
    frames, repeated, dropped = summary(out)
    assert repeated >= 20 and dropped >= 20, out
    assert_real_time(frames, stopped - started)
    assert int(probe(ffprobe, output)["nb_read_frames"]) == frames


def test_a_quiet_recording_counts_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """Off a terminal: no progress line (no carriage return), the start and
    the summary lines only, nothing repeated or dropped on an idle machine
    (give or take scheduling: at most 2 of 30)."""
    result = run_record(daemon, "-o", str(tmp_path / "clip.avi"), "--duration", "1", *SIZE)
    lines = result.stdout.splitlines()
    assert "\r" not in result.stdout and len(lines) == 2, result.stdout
    assert lines[0].startswith("recording Fake camera (test pattern) to ")
    assert lines[0].endswith(": Motion JPEG, 320x240 at 30 fps, for 1 s")
    frames, repeated, dropped = summary(lines[1])
    assert frames == 30 and repeated <= 2 and dropped <= 2, lines[1]


def test_the_progress_line_shows_on_a_terminal(daemon: Daemon, tmp_path: Path) -> None:
    """On a pty the line is redrawn in place (carriage return, erase to the
    end of line) with elapsed seconds, frames and size, then erased before
    the summary."""
    controller, terminal = pty.openpty()
    try:
        recorder = Recorder(
            daemon, "camera", "-o", str(tmp_path / "clip.avi"), "--duration", "1.5", *SIZE,
            stdout=terminal,
        )  # fmt: skip
        os.close(terminal)
        terminal = -1
        shown = read_all(controller, recorder)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    redraws = re.findall(r"\r\x1b\[Krecording: (\d+\.\d) s, (\d+) frames, (\d+) KiB", shown)
    assert len(redraws) >= 5, shown
    assert float(redraws[-1][0]) > float(redraws[0][0]) and int(redraws[-1][1]) > 0
    last = shown.rstrip().split("\n")[-1]  # not splitlines(): that splits at \r too
    assert last.split("\r\x1b[K")[-1].startswith("wrote 45 frames"), shown


def read_all(controller: int, recorder: Recorder) -> str:
    """Everything the recorder writes on the terminal, until it exits."""
    chunks = []
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        assert ready, "the recorder wrote nothing for 30 s"
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    status, _, err = recorder.finish()
    assert status == 0, err
    return b"".join(chunks).decode()


def test_audio_in_segments_stopped_by_sigterm(
    daemon: Daemon, tmp_path: Path, recorders: list[Recorder]
) -> None:
    """A microphone recorded in 0.4 s segments and stopped by SIGTERM after
    a second: whole WAV files (their headers patched), 19200 samples each
    but the last, adding up to what the summary says."""
    output = tmp_path / "tone.wav"
    recorder = Recorder(daemon, "microphone", "-o", str(output), "--segment", "0.4")
    recorders.append(recorder)
    recorder.wait_started()
    time.sleep(1.0)  # a second of recording: the scenario, not a wait
    status, out, _ = recorder.stop(signal.SIGTERM)
    assert status == 0 and "stopped by SIGTERM" in out, out
    seconds = float(re.search(r"wrote (\d+\.\d) s \(48000 Hz", out)[1])  # type: ignore[index]
    lengths = []
    for path in sorted(tmp_path.glob("tone-*.wav")):
        with wave.open(str(path), "rb") as file:
            lengths.append(file.getnframes())
    assert len(lengths) >= 3 and set(lengths[:-1]) == {19200}, lengths
    assert 0 < lengths[-1] <= 19200
    assert abs(sum(lengths) / 48000 - seconds) < 0.05 and seconds >= 0.9


def test_record_into_a_missing_directory_names_it(daemon: Daemon, tmp_path: Path) -> None:
    output = tmp_path / "missing" / "clip.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "mediabroker", "record", "--run-dir", str(daemon.run_dir),
         "camera", "-o", str(output)],
        env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"mediabroker: error: cannot write {output}: the directory {output.parent} does not "
        f"exist (create it first: mkdir -p {output.parent})\n"
    )
