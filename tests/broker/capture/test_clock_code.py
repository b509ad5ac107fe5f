"""The fake camera's clock code: its capture time as a barcode that survives
resizing and H.264, read back by `read_clock_code` (and by
tests/support/clockcode.js in a browser, tests/web)."""

from __future__ import annotations

import fractions
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_nothing_left
from mediabroker.capture.fake import (
    FakeCamera,
    clock_code_age_ms,
    paint_clock_code,
    pattern_seq,
    read_clock_code,
    verify_pattern,
)
from mediabroker.config import BrokerConfig, load_config
from mediabroker.devices import DeviceCatalog
from mediastream import MediaDevices
from mediastream.ring import VideoFormat
from support import Daemon

SIZES = [(64, 48), (64, 36), (160, 120), (640, 480), (1280, 720), (1920, 1080)]
CODE = 0xDEAD_BEEF


def painted(width: int, height: int, seq: int = 3) -> np.ndarray:
    camera = FakeCamera(VideoFormat(width, height), frame_rate=0, clock_code=True)
    view = np.zeros((height, width, 3), np.uint8)
    camera.read_into(view, seq)
    return view


@pytest.mark.parametrize("size", SIZES)
def test_a_painted_frame_reads_back_its_capture_time(size: tuple[int, int]) -> None:
    before = time.time_ns() // 1_000_000
    view = painted(*size)
    code = read_clock_code(view)
    assert code is not None
    assert clock_code_age_ms(code, before) <= 0 <= clock_code_age_ms(code) < 1000
    assert pattern_seq(view) == 3  # the stamp still holds; the pattern check does not
    assert not verify_pattern(view)


@pytest.mark.parametrize("pixel_format", ["bgr24", "rgb24", "gray8", "rgbf32", "rgbf32planar"])
def test_every_pixel_format_carries_it(pixel_format: str) -> None:
    fmt = VideoFormat(320, 240, pixel_format)
    view = np.zeros(fmt.shape, fmt.dtype)
    FakeCamera(fmt, frame_rate=0, clock_code=True).read_into(view, 1)
    image = np.moveaxis(view, 0, -1) if pixel_format.endswith("planar") else view
    code = read_clock_code(image)
    assert code is not None and 0 <= clock_code_age_ms(code) < 1000


def test_the_code_is_off_by_default_and_absent_then() -> None:
    camera = FakeCamera(VideoFormat(640, 480), frame_rate=0)
    view = np.zeros((480, 640, 3), np.uint8)
    camera.read_into(view, 9)
    assert verify_pattern(view) and read_clock_code(view) is None
    assert read_clock_code(np.full((480, 640, 3), 128, np.uint8)) is None


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
@pytest.mark.parametrize("scaled", [(32, 24), (96, 54), (320, 240), (333, 177), (1920, 1080)])
def test_it_survives_a_resize(size: tuple[int, int], scaled: tuple[int, int]) -> None:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    paint_clock_code(image, CODE)
    resized = cv2.resize(image, scaled, interpolation=cv2.INTER_AREA)
    assert read_clock_code(resized) == CODE
    assert read_clock_code(cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)) == CODE


def test_a_misread_cell_gives_none_not_a_wrong_time() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    paint_clock_code(image, CODE)
    flipped = image.copy()
    flipped[100:140, 170:230] = 255 - flipped[100:140, 170:230]  # cell 18 (row 2, column 2)
    assert read_clock_code(flipped) is None
    grey = image.copy()
    grey[100:140, 170:230] = 128  # half-way: unreadable
    assert read_clock_code(grey) is None


def test_the_age_unwraps_the_32_bits() -> None:
    now = 1_800_000_000_123
    assert clock_code_age_ms(now & 0xFFFF_FFFF, now + 40) == 40
    assert clock_code_age_ms((now + 5) & 0xFFFF_FFFF, now) == -5
    wrapped = (1 << 32) * 419  # just after a wrap of the low 32 bits
    assert clock_code_age_ms((wrapped - 30) & 0xFFFF_FFFF, wrapped + 20) == 50


def h264_round_trip(frames: list[np.ndarray], bit_rate: int) -> list[np.ndarray]:
    """Encode ``frames`` as a WebRTC sender would (x264 ultrafast, zerolatency,
    Baseline) and decode them again."""
    import av

    height, width = frames[0].shape[:2]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.bit_rate, encoder.framerate = bit_rate, fractions.Fraction(30)
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.profile = "Baseline"
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30"}
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    for pts, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        for packet in encoder.encode(frame):
            decoded += [d.to_ndarray(format="bgr24") for d in decoder.decode(packet)]
    return decoded


@pytest.mark.parametrize(("size", "bit_rate"), [((640, 480), 500_000), ((1280, 720), 1_000_000)])
def test_it_survives_h264(size: tuple[int, int], bit_rate: int) -> None:
    """The fake camera's pattern changes every pixel every frame, the worst
    case for an encoder: the code must come through all the same, on every
    frame, and through a resize after the decode (a viewer's small canvas)."""
    camera = FakeCamera(VideoFormat(*size), frame_rate=0, clock_code=True)
    frames, codes = [], []
    for seq in range(60):
        view = np.zeros((size[1], size[0], 3), np.uint8)
        camera.read_into(view, seq)
        frames.append(view)
        codes.append(read_clock_code(view))
        time.sleep(0.001)  # a measuring step, not a wait: consecutive frames get new codes
    decoded = h264_round_trip(frames, bit_rate)
    assert len(decoded) >= 50  # zerolatency: no frames held back but the encoder's few
    read = [read_clock_code(image) for image in decoded]
    assert read == codes[: len(read)]
    small = [cv2.resize(i, (160, 120), interpolation=cv2.INTER_AREA) for i in decoded]
    assert [read_clock_code(image) for image in small] == read


# -- configured ------------------------------------------------------------------


def test_the_configuration_turns_it_on_for_built_in_and_added_cameras(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[devices]\nfake = true\nfake_clock_code = true\n")
    config = load_config(path, {"hardware_devices": False, "run_dir": tmp_path})
    catalog = DeviceCatalog(config)
    added = catalog.fakes.add("videoinput", "Door")
    cameras = [d for d in catalog.discover() if d.kind == "videoinput"]
    assert [d.backend.params for d in cameras] == [{"clock_code": True}] * 2
    assert added in cameras
    plain = DeviceCatalog(BrokerConfig(run_dir=tmp_path, fake_devices=True, hardware_devices=False))
    assert all(not d.backend.params for d in plain.discover())


@pytest.fixture
def clock_daemon(tmp_path: Path) -> Iterator[Daemon]:
    process = Daemon(tmp_path / "run", "--fake-clock-code")
    try:
        process.wait_ready()
        yield process
        assert process.terminate() == 0, process.log()
        assert_nothing_left(process)
    finally:
        process.close()


def test_a_daemon_with_the_flag_serves_frames_that_tell_their_age(clock_daemon: Daemon) -> None:
    """1. Camera frames at its own size and a derived (resized) source both
    carry the code; 2. its age on arrival is that of a shared-memory read."""
    with MediaDevices(clock_daemon.run_dir, name="clock code") as devices:
        for constraints in ({}, {"width": 320, "height": 240}):
            track = devices.getUserMedia({"video": constraints or True}).getVideoTracks()[0]
            try:
                track.read(timeout=10)  # a first frame: the source is up
                frame = track.read(timeout=5)
                code = read_clock_code(frame.copy().data)
            finally:
                track.stop()
            assert code is not None, track.getSettings()
            assert 0 <= clock_code_age_ms(code) < 500
