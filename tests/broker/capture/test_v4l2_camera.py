"""V4L2 cameras through OpenCV, in a capture process: what can be tested
without a camera or kernel modules (opening fails, and says why), and the
choice of the mode a camera is opened in."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediabroker.capture.v4l2 import V4L2Camera, choose_mode
from mediabroker.devices.v4l2 import Mode
from mediabroker.errors import CaptureError
from mediastream.ring import VideoFormat
from support import held_open

MODES = [
    Mode(640, 480, 30.0, "YUYV"),
    Mode(1280, 720, 10.0, "YUYV"),
    Mode(1920, 1080, 5.0, "YUYV"),
    Mode(1280, 720, 30.0, "MJPG"),
    Mode(1920, 1080, 30.0, "MJPG"),
]


@pytest.mark.parametrize(
    ("width", "height", "rate", "expected"),
    [
        (640, 480, 30.0, Mode(640, 480, 30.0, "YUYV")),  # raw is fast enough
        (1280, 720, 10.0, Mode(1280, 720, 10.0, "YUYV")),  # raw is fast enough
        (1280, 720, 30.0, Mode(1280, 720, 30.0, "MJPG")),  # only MJPG gives 30 fps
        (1000, 700, 25.0, Mode(1280, 720, 30.0, "MJPG")),  # smallest covering size
        (4000, 3000, 30.0, Mode(1920, 1080, 30.0, "MJPG")),  # nothing covers: the largest
    ],
)
def test_mjpg_only_where_it_gives_a_higher_rate(
    width: int, height: int, rate: float, expected: Mode
) -> None:
    assert choose_mode(MODES, width, height, rate) == expected


@pytest.fixture
def held_file(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    path = tmp_path / "video7"
    with held_open(path) as process:
        yield path, process


def test_a_camera_that_cannot_be_opened_names_its_holder(
    held_file: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """The real V4L2 backend through OpenCV: opening fails (no camera here),
    and the CaptureError, which becomes the client's NotReadableError, names
    the pid and process that hold the node."""
    path, process = held_file
    with pytest.raises(CaptureError, match=rf"in use by pid {process.pid} \(sleep\)"):
        V4L2Camera(VideoFormat(640, 480), 30.0, path, label="Webcam C270")


def test_a_camera_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"Webcam C270 \(.*video9\) cannot be opened"):
        V4L2Camera(VideoFormat(640, 480), 30.0, tmp_path / "video9", label="Webcam C270")
