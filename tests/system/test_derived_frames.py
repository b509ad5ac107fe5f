"""Derived video against a real daemon: letterbox, cropRect and contentRect,
the float tensor formats with normalize, sharing, and resizeMode's truth.

Each test runs a daemon of its own on fake devices, so the camera's mode is
the test's. A derived frame is compared with the camera's own bgr24 frame
of the same capture (the derived slot carries the camera frame's capture
timestamp), converted by a numpy reference; the scaling in it is OpenCV's
INTER_AREA, the derived process's by design.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from mediastream import MediaDevices, MediaStreamTrack, VideoFrame
from mediastream.errors import ConstraintTypeError, OverconstrainedError
from support import Daemon

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
HD = {"width": 1280, "height": 720}
READ_TIMEOUT_S = 5.0
MATCH_ATTEMPTS = 60  # frames to look through for the pair of one capture


@pytest.fixture
def devices(daemon: Daemon) -> Iterator[MediaDevices]:
    with MediaDevices(daemon.run_dir, name="derived-frames") as md:
        yield md
        for track in list(md._tracks.values()):
            track.stop()


def video(devices: MediaDevices, constraints: dict[str, Any]) -> MediaStreamTrack:
    return devices.getUserMedia({"video": constraints}).getVideoTracks()[0]


def read(track: MediaStreamTrack) -> VideoFrame:
    frame = track.read(timeout=READ_TIMEOUT_S)
    assert isinstance(frame, VideoFrame)
    return frame.copy()


def same_capture(
    native: MediaStreamTrack, derived: MediaStreamTrack
) -> tuple[VideoFrame, VideoFrame]:
    """A camera frame and the derived frame made from it, matched by capture
    timestamp: reads of the two tracks interleave, and either may be ahead."""
    cameras: dict[float, VideoFrame] = {}
    made: dict[float, VideoFrame] = {}
    for _ in range(MATCH_ATTEMPTS):
        for track, frames in ((native, cameras), (derived, made)):
            frame = read(track)
            frames[frame.timestamp] = frame
        common = sorted(cameras.keys() & made.keys())
        if common:
            return cameras[common[0]], made[common[0]]
    raise AssertionError(
        f"no derived frame matched a camera frame: camera {sorted(cameras)[:4]}..., "
        f"derived {sorted(made)[:4]}..."
    )


def rect(settings: dict[str, Any], name: str) -> tuple[int, int, int, int]:
    r = settings[name]
    return r["x"], r["y"], r["width"], r["height"]


def expected(camera: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """The numpy reference for a derived track with ``settings``, from the
    camera frame: crop at cropRect, scale to contentRect, place it, convert."""
    cx, cy, cw, ch = rect(settings, "cropRect")
    kx, ky, kw, kh = rect(settings, "contentRect")
    part = camera[cy : cy + ch, cx : cx + cw]
    if (cw, ch) != (kw, kh):
        part = cv2.resize(part, (kw, kh), interpolation=cv2.INTER_AREA)
    fmt = settings["pixelFormat"]
    black: np.ndarray = np.zeros(3)
    image = part.astype(np.float64)
    if fmt == "rgb24":
        image = image[..., ::-1]
    elif fmt in ("rgbf32", "rgbf32planar"):
        norm = settings.get("normalize", {"mean": [0.0] * 3, "std": [1.0] * 3})
        mean, std = np.array(norm["mean"]), np.array(norm["std"])
        image = (image[..., ::-1] / 255.0 - mean) / std
        black = -mean / std
    out = np.empty((settings["height"], settings["width"], 3))
    out[...] = black
    out[ky : ky + kh, kx : kx + kw] = image
    return out.transpose(2, 0, 1) if fmt == "rgbf32planar" else out


def assert_matches(frame: VideoFrame, want: np.ndarray, tolerance: float) -> None:
    assert frame.data.shape == want.shape
    error = float(np.abs(frame.data.astype(np.float64) - want).max())
    assert error <= tolerance, f"derived frame differs from the reference by {error}"


def holders_by_source(devices: MediaDevices) -> list[set[str]]:
    return [set(s["holders"]) for s in devices.broker_stats()["sources"]]


def test_letterbox_pads_black_around_the_whole_picture(devices: MediaDevices) -> None:
    """1. The camera runs at 1280x720 for one track. 2. A 320x320 letterbox
    track's settings say so: the whole camera frame, at 0,70 320x180. 3. Its
    frame is black outside contentRect and inside it is the camera's frame
    of the same capture, scaled."""
    camera = video(devices, HD)
    boxed = video(devices, {"width": 320, "height": 320, "resizeMode": "letterbox"})
    settings = boxed.getSettings()
    assert settings["resizeMode"] == "letterbox"
    assert rect(settings, "cropRect") == (0, 0, 1280, 720)
    assert rect(settings, "contentRect") == (0, 70, 320, 180)
    source, frame = same_capture(camera, boxed)
    assert frame.data.shape == (320, 320, 3)
    assert not frame.data[:70].any() and not frame.data[250:].any()
    assert frame.data[70:250].any()
    assert_matches(frame, expected(source.data, settings), 0)


@pytest.mark.parametrize(
    ("constraints", "crop"),
    [
        ({"width": 320, "height": 320}, (280, 0, 720, 720)),
        ({"width": 640, "height": 360}, (0, 0, 1280, 720)),
        ({"width": 320, "height": 240, "pixelFormat": "rgb24"}, (160, 0, 960, 720)),
    ],
    ids=["square", "same-aspect", "4:3 rgb24"],
)
def test_crop_and_scale_reports_the_crop_it_took(
    devices: MediaDevices, constraints: dict[str, Any], crop: tuple[int, ...]
) -> None:
    """cropRect is the part of the camera frame the pixels show; contentRect
    the whole frame; the frame is that crop, scaled."""
    camera = video(devices, HD)
    derived = video(devices, constraints)
    settings = derived.getSettings()
    assert settings["resizeMode"] == "crop-and-scale"
    assert rect(settings, "cropRect") == crop
    assert rect(settings, "contentRect") == (0, 0, settings["width"], settings["height"])
    source, frame = same_capture(camera, derived)
    assert_matches(frame, expected(source.data, settings), 0)


def test_the_camera_track_is_its_whole_frame(devices: MediaDevices) -> None:
    settings = video(devices, HD).getSettings()
    assert settings["resizeMode"] == "none"
    assert rect(settings, "cropRect") == rect(settings, "contentRect") == (0, 0, 1280, 720)


@pytest.mark.parametrize(
    ("fmt", "shape"), [("rgbf32", (180, 320, 3)), ("rgbf32planar", (3, 180, 320))]
)
@pytest.mark.parametrize("normalize", [None, IMAGENET], ids=["0..1", "imagenet"])
def test_tensor_formats_match_the_reference(
    devices: MediaDevices, fmt: str, shape: tuple[int, ...], normalize: dict[str, Any] | None
) -> None:
    """Float32 views, zero copy, shaped HWC or CHW, in [0, 1] or normalised
    per channel, equal to the numpy reference from the camera's bgr24 frame
    of the same capture; normalize is reported in the settings."""
    camera = video(devices, HD)
    constraints: dict[str, Any] = {"width": 320, "height": 180, "pixelFormat": fmt}
    if normalize is not None:
        constraints["normalize"] = normalize
    tensor = video(devices, constraints)
    settings = tensor.getSettings()
    assert settings["pixelFormat"] == fmt
    assert settings.get("normalize") == normalize
    live = tensor.read(timeout=READ_TIMEOUT_S)
    assert isinstance(live, VideoFrame) and live.format == fmt
    assert live.data.dtype == np.float32 and live.data.shape == shape
    assert not live.data.flags.owndata and not live.data.flags.writeable  # a view of the slot
    source, frame = same_capture(camera, tensor)
    if normalize is None:
        assert 0.0 <= frame.data.min() and frame.data.max() <= 1.0
    assert_matches(frame, expected(source.data, settings), 1e-5)


def test_a_letterboxed_tensor_pads_with_normalised_black(devices: MediaDevices) -> None:
    camera = video(devices, HD)
    constraints = {"width": 320, "height": 320, "resizeMode": "letterbox"}
    tensor = video(devices, {**constraints, "pixelFormat": "rgbf32planar", "normalize": IMAGENET})
    settings = tensor.getSettings()
    source, frame = same_capture(camera, tensor)
    black = -np.array(IMAGENET["mean"]) / np.array(IMAGENET["std"])
    assert np.allclose(frame.data[:, :70], black[:, None, None], atol=1e-6)
    assert_matches(frame, expected(source.data, settings), 1e-5)


def test_equal_tensor_requests_share_one_source(devices: MediaDevices) -> None:
    """1. Two tracks with the same size, format and normalize read one
    source. 2. Another normalize, or none, is a source of its own."""
    video(devices, HD)
    request = {"width": 320, "height": 180, "pixelFormat": "rgbf32", "normalize": IMAGENET}
    first, second = video(devices, request), video(devices, dict(request))
    other = video(devices, {**request, "normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}})
    plain = video(devices, {k: v for k, v in request.items() if k != "normalize"})
    holders = holders_by_source(devices)
    ids = {f"track:{t.id}" for t in (first, second)}
    assert any(ids <= h for h in holders), holders
    for track in (other, plain):
        (own,) = [h for h in holders if f"track:{track.id}" in h]
        assert not own & ids
    assert len(holders) == 4  # the camera, and three derived sources


def test_letterbox_and_crop_of_one_size_are_two_sources(devices: MediaDevices) -> None:
    video(devices, HD)
    boxed = video(devices, {"width": 320, "height": 320, "resizeMode": "letterbox"})
    cropped = video(devices, {"width": 320, "height": 320})
    holders = holders_by_source(devices)
    assert not any({f"track:{boxed.id}", f"track:{cropped.id}"} <= h for h in holders)


def test_a_colour_conversion_at_the_native_size_is_resize_mode_none(
    devices: MediaDevices,
) -> None:
    camera = video(devices, HD)
    colour = video(devices, {**HD, "pixelFormat": "rgb24"})
    settings = colour.getSettings()
    assert settings["resizeMode"] == "none"
    assert rect(settings, "cropRect") == rect(settings, "contentRect") == (0, 0, 1280, 720)
    source, frame = same_capture(camera, colour)
    assert np.array_equal(frame.data, source.data[..., ::-1])


def test_resize_mode_tells_the_truth_after_a_re_open(devices: MediaDevices) -> None:
    """1. A 640x480 track opens the camera at 640x480: resizeMode "none".
    2. A 1280x720 track re-opens the camera in that mode; the first track's
    source now derives from it, and its unmute carries new settings.
    3. Its settings (its own, and a clone's) say crop-and-scale from 160,0
    960x720 by the time its unmute fires, and its pixels are that crop of
    the camera's frame of the same capture."""
    small = video(devices, {"width": 640, "height": 480})
    assert small.getSettings()["resizeMode"] == "none"
    unmuted = threading.Event()
    seen_at_unmute: list[str] = []

    def on_unmute(event: object) -> None:
        seen_at_unmute.append(small.getSettings()["resizeMode"])
        unmuted.set()

    small.addEventListener("unmute", on_unmute)
    camera = video(devices, HD)
    assert unmuted.wait(15), "the re-opened camera's old mode never unmuted"
    assert seen_at_unmute == ["crop-and-scale"]
    settings = small.getSettings()
    assert settings == small.clone().getSettings()
    assert settings["resizeMode"] == "crop-and-scale"
    assert rect(settings, "cropRect") == (160, 0, 960, 720)
    assert rect(settings, "contentRect") == (0, 0, 640, 480)
    source, frame = same_capture(camera, small)
    assert_matches(frame, expected(source.data, settings), 0)


def test_a_track_that_requires_native_pixels_keeps_them(devices: MediaDevices) -> None:
    """A track requiring resizeMode "none" pins the camera's mode: a larger
    request from another track is refused naming the side it wants larger,
    and the pinned track stays "none"; the pinned track itself may still
    ask for a larger native mode (its own re-open)."""
    pinned = video(devices, {"width": 640, "height": 480, "resizeMode": {"exact": "none"}})
    with pytest.raises(OverconstrainedError, match="requires resizeMode 'none'") as caught:
        video(devices, HD)
    assert caught.value.constraint == "width"
    assert pinned.getSettings()["resizeMode"] == "none"
    assert read(pinned).data.shape == (480, 640, 3)
    pinned.applyConstraints({**HD, "resizeMode": {"exact": "none"}})
    settings = pinned.getSettings()
    assert (settings["width"], settings["height"], settings["resizeMode"]) == (1280, 720, "none")
    assert read(pinned).data.shape == (720, 1280, 3)


@pytest.mark.parametrize(
    ("normalize", "named"),
    [
        ({"mean": [0.5, 0.5], "std": [1, 1, 1]}, "mean [0.5, 0.5]"),
        ({"mean": [0.5] * 3, "std": [1, 0, 1]}, "std"),
        ("imagenet", "'imagenet'"),
    ],
    ids=["short mean", "zero std", "a string"],
)
def test_a_malformed_normalize_is_a_type_error(
    devices: MediaDevices, normalize: Any, named: str
) -> None:
    with pytest.raises(ConstraintTypeError, match="normalize") as caught:
        video(devices, {"pixelFormat": "rgbf32", "normalize": normalize})
    assert named in str(caught.value)


def test_capabilities_offer_letterbox_and_the_tensor_formats(devices: MediaDevices) -> None:
    capabilities = video(devices, {}).getCapabilities()
    assert "letterbox" in capabilities["resizeMode"]
    assert {"rgbf32", "rgbf32planar"} <= set(capabilities["pixelFormat"])
    assert devices.getSupportedConstraints()["normalize"] is True
