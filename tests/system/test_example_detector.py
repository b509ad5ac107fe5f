"""The README's worked example, ``examples/face_detector.py``, against a real
daemon playing a video of scikit-image's astronaut photo as a camera."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import skimage.data as skimage_data  # the examples extra, which ./scripts/test installs

from conftest import assert_nothing_left
from support import REPO, Daemon, child_env

EXAMPLE = REPO / "examples" / "face_detector.py"
CAMERA = (1280, 720)  # the file's size: a 16:9 camera
PHOTO_AT = (400, 0, 720, 720)  # where the photo lies in it: x, y, width, height
MODEL = 320  # letterboxed: 320x180 of picture between bands 70 px tall, 4 camera px a pixel
FRAMES = 5


def camera_image() -> np.ndarray:
    """The astronaut photo (512x512) scaled up into a black 1280x720 BGR frame."""
    x, y, w, h = PHOTO_AT
    image = np.zeros((CAMERA[1], CAMERA[0], 3), np.uint8)
    photo = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    image[y : y + h, x : x + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC)
    return image


def write_video(path: Path, image: np.ndarray, frames: int = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, CAMERA)
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path


def first_frame(path: Path) -> np.ndarray:
    """OpenCV's decode of the file's first frame: what the camera delivers."""
    capture = cv2.VideoCapture(str(path))
    ok, image = capture.read()
    capture.release()
    assert ok, f"OpenCV cannot read back {path}"
    return image


def example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("face_detector", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def astronaut_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    """A daemon whose camera "Astronaut" is the photo's video, looped."""
    path = write_video(tmp_path / "astronaut.avi", camera_image())
    config = f'[[devices.files]]\npath = "{path}"\nlabel = "Astronaut"\nloop = true\n'
    daemon = Daemon(tmp_path / "run", config=config)
    try:
        daemon.wait_ready()
        yield daemon, path
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def test_the_example_finds_the_face_in_camera_pixels(
    astronaut_daemon: tuple[Daemon, Path],
) -> None:
    """1. The reference: the same cascade on the full-size 1280x720 frame.
    2. ``face_detector.py --frames 5`` on the file camera, at 320x320
       letterboxed rgbf32, prints five lines, each with one face.
    3. Every box, mapped back with cropRect and contentRect, lies on the
       reference: centres within 12% of the face's width, sizes within 20%.
       Ignoring contentRect would put it 280 camera px too low (the 70 px
       band, times 4); ignoring the scale, at a quarter of its size."""
    daemon, path = astronaut_daemon
    rgb = cv2.cvtColor(first_frame(path), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    (expected,) = example_module().FaceDetector()(rgb)
    x, y, w, _ = PHOTO_AT
    assert x < expected[0] < x + w and y < expected[1], f"the reference is off the face: {expected}"
    command = [sys.executable, str(EXAMPLE), "--camera", "Astronaut"]
    result = subprocess.run(
        [*command, "--size", str(MODEL), "--frames", str(FRAMES)],
        env=child_env(MEDIABROKER_RUNDIR=str(daemon.run_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{result.stderr}\ndaemon log:\n{daemon.log()}"
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == FRAMES, result.stdout
    seqs = [line["captureSeq"] for line in lines]
    assert seqs == sorted(set(seqs)), f"capture numbers not increasing: {seqs}"
    for line in lines:
        assert len(line["boxes"]) == 1, f"not one face in frame {line}"
        assert_near(line["boxes"][0], expected)
    timings = [line["inferenceMs"] for line in lines]
    print(f"reference {expected}; found {[line['boxes'][0] for line in lines]}; ms {timings}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_example_stops_cleanly_on_a_signal(
    astronaut_daemon: tuple[Daemon, Path], stop: signal.Signals
) -> None:
    """Without ``--frames`` it runs until SIGTERM or Ctrl-C (SIGINT), then
    stops its track and exits 0 with no traceback."""
    daemon, _ = astronaut_daemon
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--camera", "Astronaut"],
        env=child_env(MEDIABROKER_RUNDIR=str(daemon.run_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        assert json.loads(first)["boxes"], first
        process.send_signal(stop)
        assert process.wait(15) == 0, process.stderr.read()
        assert process.stderr.read() == ""


def assert_near(box: list[float], expected: tuple[float, float, float, float]) -> None:
    """``box`` is ``expected`` give or take: centres within 12% of its width,
    width within 20%."""
    (bx, by, bw, bh), (ex, ey, ew, eh) = box, expected
    offset = np.hypot(bx + bw / 2 - (ex + ew / 2), by + bh / 2 - (ey + eh / 2))
    assert offset < 0.12 * ew and abs(bw / ew - 1) < 0.2, (
        f"box {box} is not the face at {expected} (centres {offset:.0f} px apart)"
    )
