"""``mediabroker snapshot`` and ``mediabroker record`` against a real daemon."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from mediabroker.capture.fake import TONE_HZ, verify_pattern
from support import Daemon, run_mediabroker


def on(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """A client command against ``daemon``; fails the test on a traceback."""
    result = run_mediabroker(*args, "--run-dir", str(daemon.run_dir))
    assert "Traceback" not in result.stderr, result.stderr
    return result


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
    reader missed; what was written is said on stdout (tests/broker/cli/
    test_record.py has signals, segments, H.264 and the progress line)."""
    output = tmp_path / f"clip{suffix}"
    result = on(
        daemon, "record", "camera", "-o", str(output), "--duration", "1", "--width", "160",
        "--height", "120", *(["--codec", "mpeg4"] if suffix == ".mp4" else []),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("recording Fake camera (test pattern) to ")
    assert "wrote 30 frames (160x120 at 30 fps" in result.stdout
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
    assert "wrote 0.5 s (48000 Hz, 1 channel(s), 16-bit)" in result.stdout
    with wave.open(str(output), "rb") as file:
        assert (file.getnchannels(), file.getsampwidth(), file.getframerate()) == (1, 2, 48000)
        assert file.getnframes() == 24000
        samples = np.frombuffer(file.readframes(24000), "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 48000 / len(samples)
    assert abs(peak_hz - TONE_HZ) < 4


@pytest.mark.parametrize("name", ["clip.mov", "clip"])
def test_record_refuses_a_format_it_cannot_write(daemon: Daemon, tmp_path: Path, name: str) -> None:
    result = on(daemon, "record", "camera", "-o", str(tmp_path / name))
    assert result.returncode == 2 and "use .mp4, .mkv or .avi for a camera" in result.stderr
