"""Video files as cameras: real files written by OpenCV, decoded by OpenCV.

The files are generated here (MJPG in AVI and mp4v in MP4 both work in the
headless wheel). Frames are identified by comparing them byte for byte with
OpenCV's own decode of the same file, so a test knows exactly which file
frame a slot holds.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_nothing_left
from mediabroker.capture.backend import Clock
from mediabroker.capture.files import FileCamera, probe_video_file
from mediabroker.capture.opencv import FrameStats, fill_slot
from mediabroker.errors import EndOfStream
from mediastream import MediaDevices, NotReadableError
from mediastream.frames import VideoFrame
from mediastream.ring import Ring, VideoFormat, VideoWriter
from support import Daemon, unique_prefix, wait_until

WIDTH, HEIGHT, FPS = 160, 120, 25.0
CODECS = {"MJPG": "avi", "mp4v": "mp4"}


def make_video(path: Path, frames: int, *, fourcc: str = "MJPG", fps: float = FPS) -> Path:
    """A WIDTH x HEIGHT video whose frames all differ (a moving bar and a gradient)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    for index in range(frames):
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        image[..., 0] = (x * 255 // WIDTH).astype(np.uint8)
        image[..., 1] = (y * 255 // HEIGHT).astype(np.uint8)
        bar = index * WIDTH // frames
        image[:, bar : bar + WIDTH // frames, 2] = 255
        writer.write(image)
    writer.release()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """OpenCV's own decode of every frame: the reference."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def index_of(image: np.ndarray, reference: list[np.ndarray]) -> int:
    matches = [i for i, ref in enumerate(reference) if np.array_equal(ref, image)]
    assert len(matches) == 1, f"frame matches reference frames {matches}"
    return matches[0]


@pytest.fixture
def ring() -> Iterator[Ring]:
    """A real shared-memory video ring of the files' size."""
    name = unique_prefix() + "file"
    created = Ring.create(name, VideoFormat(WIDTH, HEIGHT), 4)
    try:
        yield created
    finally:
        created.close()
        Ring.unlink(name)


# -- the backend, in this process ----------------------------------------------


@pytest.mark.parametrize("fourcc", CODECS)
def test_frames_are_decoded_straight_into_the_ring_slot(
    tmp_path: Path, ring: Ring, fourcc: str
) -> None:
    """cap.read(image=view) writes into shared memory: no fallback copy, and
    the slot holds exactly OpenCV's decode of each frame, in order."""
    path = make_video(tmp_path / f"clip.{CODECS[fourcc]}", 6, fourcc=fourcc)
    reference = decode_all(path)
    assert len(reference) == 6
    writer = VideoWriter(ring)
    camera = FileCamera(ring.format, 0, path, loop=False, clock=Clock(0))  # type: ignore[arg-type]
    try:
        for expected in reference:
            view = writer.begin()
            camera.read_into(view, writer.seq)
            writer.commit(0, 0)
            assert np.shares_memory(view, np.frombuffer(ring.buffer, np.uint8))
            assert np.array_equal(view, expected)
        assert camera.fallback_copies == 0
        assert camera.scaled_frames == 0
        with pytest.raises(EndOfStream):
            camera.read_into(writer.begin(), writer.seq)
    finally:
        camera.close()


def test_file_info_and_frame_count(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.avi", 12)
    info = probe_video_file(path)
    assert (info.width, info.height, info.fps, info.frame_count) == (WIDTH, HEIGHT, FPS, 12)


def test_looping_starts_again_at_the_first_frame(tmp_path: Path, ring: Ring) -> None:
    path = make_video(tmp_path / "clip.avi", 5)
    reference = decode_all(path)
    camera = FileCamera(ring.format, 0, path, loop=True, clock=Clock(0))  # type: ignore[arg-type]
    writer = VideoWriter(ring)
    seen = []
    try:
        for _ in range(12):
            view = writer.begin()
            camera.read_into(view, writer.seq)
            seen.append(index_of(view, reference))
    finally:
        camera.close()
    assert seen == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert camera.loops == 2 and camera.fallback_copies == 0


def test_a_lower_rate_skips_frames_to_keep_real_time(tmp_path: Path, ring: Ring) -> None:
    path = make_video(tmp_path / "clip.avi", 10)
    reference = decode_all(path)
    camera = FileCamera(ring.format, FPS / 2, path, loop=False, clock=Clock(0))  # type: ignore[arg-type]
    writer = VideoWriter(ring)
    seen = []
    try:
        for _ in range(5):
            view = writer.begin()
            camera.read_into(view, writer.seq)
            seen.append(index_of(view, reference))
    finally:
        camera.close()
    assert seen == [0, 2, 4, 6, 8]


def test_another_size_is_cropped_and_scaled_into_the_slot(tmp_path: Path) -> None:
    """A ring smaller than the file: decoded into a private buffer, then
    cv2.resize(dst=view) writes the slot; counted as scaled, not as a fallback."""
    path = make_video(tmp_path / "clip.avi", 3)
    reference = decode_all(path)
    fmt = VideoFormat(80, 60)
    name = unique_prefix() + "small"
    with Ring.create(name, fmt, 2) as small:
        try:
            camera = FileCamera(fmt, 0, path, clock=Clock(0))
            view = VideoWriter(small).begin()
            camera.read_into(view, 1)
            camera.close()
        finally:
            Ring.unlink(name)
        expected = cv2.resize(reference[0], (80, 60), interpolation=cv2.INTER_AREA)
        assert np.array_equal(view, expected)
        assert (camera.scaled_frames, camera.fallback_copies) == (1, 0)
        del view


def test_a_silent_allocation_is_detected_copied_and_counted(tmp_path: Path) -> None:
    """When OpenCV is handed an array it cannot fill (here: the wrong shape)
    it allocates and returns a new one; fill_slot notices, copies into the
    slot and counts a fallback copy."""
    path = make_video(tmp_path / "clip.avi", 2)
    reference = decode_all(path)
    capture = cv2.VideoCapture(str(path))
    wrong = np.zeros((HEIGHT // 2, WIDTH, 3), np.uint8)
    view = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    ok, out = capture.read(image=wrong)
    capture.release()
    assert ok and out is not wrong
    stats = FrameStats()
    fill_slot(out, wrong, view, stats)
    assert stats.fallback_copies == 1 and stats.scaled_frames == 0
    assert np.array_equal(view, reference[0])


# -- through the daemon ------------------------------------------------------------


@pytest.fixture
def file_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    """A daemon playing a 20-frame 25 fps MJPG file, looped (``--video-file``)."""
    path = make_video(tmp_path / "clip.avi", 20)
    daemon = Daemon(tmp_path / "run", "--video-file", str(path))
    try:
        daemon.wait_ready()
        yield daemon, path
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def file_device_id(devices: MediaDevices) -> str:
    found = [d for d in devices.enumerateDevices() if d.label == "clip.avi (video file)"]
    assert len(found) == 1, devices.enumerateDevices()
    return found[0].deviceId


def test_a_file_plays_through_the_daemon_at_its_own_rate(
    file_daemon: tuple[Daemon, Path],
) -> None:
    """1. The file is listed as a videoinput with its native size and rate.
    2. A track on it delivers OpenCV's exact decode of the file's frames, in
       order, looping after frame 19 (frame index advances with seq, mod 20).
    3. Over ~1.5 s the delivered rate matches the file's 25 fps, by the
       frames' own timestamps and by the reader's wall clock.
    4. After the track stops, the capture process's closing log line says
       every frame was decoded in place: fallback_copies=0."""
    daemon, path = file_daemon
    reference = decode_all(path)
    with MediaDevices(daemon.run_dir) as devices:
        device_id = file_device_id(devices)
        info = next(d for d in devices.enumerateDevices() if d.deviceId == device_id)
        caps = info.getCapabilities()  # type: ignore[attr-defined]
        assert caps["width"]["max"] == WIDTH and caps["frameRate"]["max"] == FPS
        track = devices.getUserMedia(
            {"video": {"deviceId": {"exact": device_id}}}
        ).getVideoTracks()[0]
        settings = track.getSettings()
        assert (settings["width"], settings["height"], settings["frameRate"]) == (
            WIDTH,
            HEIGHT,
            FPS,
        )
        frames: list[tuple[int, float, int, float]] = []  # seq, timestamp, file index, wall
        first = track.read(timeout=5)
        assert isinstance(first, VideoFrame)
        start_wall = _now()
        while _now() - start_wall < 1.5:
            frame = track.read(timeout=2)
            assert isinstance(frame, VideoFrame)
            assert frame.data.shape == (HEIGHT, WIDTH, 3) and not frame.data.flags.owndata
            index = index_of(frame.data, reference)
            assert frame.valid, "the slot was reused while we compared it"
            frames.append((frame.seq, frame.timestamp, index, _now()))
        capture = next(s["capture"] for s in devices.broker_stats()["sources"])
        assert capture["frames"] > 0 and capture["fallbackCopies"] == 0, capture
        track.stop()
    seqs = [f[0] for f in frames]
    for (seq_a, _, index_a, _), (seq_b, _, index_b, _) in itertools.pairwise(frames):
        assert (index_b - index_a) % 20 == (seq_b - seq_a) % 20, frames
    assert {f[2] for f in frames} >= {0, 19}, "never saw the loop"
    by_timestamps = (seqs[-1] - seqs[0]) / (frames[-1][1] - frames[0][1])
    by_wall = (seqs[-1] - seqs[0]) / (frames[-1][3] - frames[0][3])
    assert by_timestamps == pytest.approx(FPS, rel=0.03), by_timestamps
    assert by_wall == pytest.approx(FPS, rel=0.10), by_wall
    print(f"file pacing: {by_timestamps:.2f} fps by timestamps, {by_wall:.2f} fps by wall clock")
    line = wait_until(
        lambda: _closing_line(daemon.log(), path) or "",
        10,
        "the capture's closing log line",
        daemon.log,
    )
    assert "fallback_copies=0" in line and "scaled_frames=0" in line, line


def _closing_line(log: str, path: Path) -> str | None:
    lines = [line for line in log.splitlines() if f"closed {path}:" in line]
    return lines[-1] if lines else None


def _now() -> float:
    return time.monotonic()


def test_a_smaller_size_of_a_file_is_a_derived_source(file_daemon: tuple[Daemon, Path]) -> None:
    daemon, path = file_daemon
    reference = decode_all(path)
    with MediaDevices(daemon.run_dir) as devices:
        device_id = file_device_id(devices)
        constraints = {
            "deviceId": {"exact": device_id},
            "width": {"exact": 80},
            "height": {"exact": 60},
        }
        track = devices.getUserMedia({"video": constraints}).getVideoTracks()[0]
        frame = track.read(timeout=5)
        assert isinstance(frame, VideoFrame)
        assert frame.data.shape == (60, 80, 3)
        scaled = [cv2.resize(r, (80, 60), interpolation=cv2.INTER_AREA) for r in reference]
        best = min(float(np.abs(s.astype(int) - frame.data.astype(int)).mean()) for s in scaled)
        assert best < 2.0, f"no file frame scaled looks like what was delivered ({best:.1f})"


def test_a_file_that_does_not_loop_ends_its_tracks(tmp_path: Path) -> None:
    """1. The configuration names a 10-frame file with loop = false and a label.
    2. A track on it gets frames, then fires ``ended`` once the file ends,
       and read() raises NotReadableError.
    3. The daemon still serves the fake camera."""
    path = make_video(tmp_path / "once.avi", 10)
    config = f'[[devices.files]]\npath = "{path}"\nlabel = "Once"\nloop = false\n'
    daemon = Daemon(tmp_path / "run", config=config)
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            device_id = next(d.deviceId for d in devices.enumerateDevices() if d.label == "Once")
            track = devices.getUserMedia(
                {"video": {"deviceId": {"exact": device_id}}}
            ).getVideoTracks()[0]
            ended: list[str] = []
            track.addEventListener("ended", lambda event: ended.append(event.type))
            assert track.read(timeout=5) is not None
            wait_until(lambda: ended, 5, "the track to end at the end of the file")
            with pytest.raises(NotReadableError):
                track.read(timeout=1)
            camera = devices.getUserMedia({"video": True}).getVideoTracks()[0]
            assert camera.label.startswith("Fake camera")
            assert camera.read(timeout=5) is not None
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()
