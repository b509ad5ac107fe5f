"""Which device and settings a track gets (`mediabroker.selection`), in-process.

Devices are the devices package's own fakes (and a smaller camera built
from them), so their capabilities have the shapes discovery gives. The
functions that look at a running source read only its device, format,
frame rate, parent and counters; `running_source` makes a stand-in, since
a real `Source` belongs to a daemon's event loop.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import assert_nothing_left
from mediabroker.devices import Device
from mediabroker.devices.device import video_capabilities
from mediabroker.devices.fakes import fake_camera, fake_devices, fake_microphone
from mediabroker.framing import CROP_AND_SCALE, Framing
from mediabroker.selection import (
    choose_device,
    ring_format,
    select_for_device,
    settings_for_source,
    settle_settings,
)
from mediastream import MediaDevices
from mediastream.errors import NotFoundError, OverconstrainedError
from mediastream.ring import AudioFormat, RingFormat, VideoFormat
from support import Daemon

if TYPE_CHECKING:
    from mediabroker.sources import Source


def small_camera(key: str = "small", width: int = 1280, height: int = 720) -> Device:
    """A fake camera that goes up to ``width`` x ``height`` at 60 fps."""
    base = fake_camera(key, f"Small camera {key}")
    caps = video_capabilities(base.device_id, base.group_id, width, height, 60.0)
    return dataclasses.replace(base, capabilities=caps)


BIG = fake_camera("big", "Big camera")  # 1920 x 1080 at 30 fps
SMALL = small_camera()
MICROPHONE = fake_microphone("mic", "Microphone")


def idle(device: Device) -> dict[str, Any] | None:
    """The `RunningSettings` of a daemon where no device is in use."""
    return None


@dataclasses.dataclass
class RunningSource:
    """What selection reads of a running source."""

    device: Device
    format: RingFormat
    frame_rate: float
    parent: Source | None
    counters: dict[str, float]
    framing: Framing = CROP_AND_SCALE

    @property
    def plan(self) -> RunningSource:
        """The plan's framing is all selection reads of it."""
        return self


def running_source(
    device: Device,
    fmt: RingFormat,
    frame_rate: float = 0.0,
    parent: Source | None = None,
    counters: dict[str, float] | None = None,
) -> Source:
    """A `RunningSource`, typed as the `Source` it stands in for."""
    return cast("Source", RunningSource(device, fmt, frame_rate, parent, counters or {}))


# -- choose_device: candidates, ranking, failures ----------------------------------------------


@pytest.mark.parametrize(
    "constraints", [{}, {"width": {"min": 10**8}}, {"backgroundBlur": {"exact": True}}], ids=repr
)
def test_no_device_of_the_kind_is_not_found_before_anything_else(
    constraints: dict[str, Any],
) -> None:
    """The spec checks for candidates first: neither an impossible nor a
    forbidden constraint changes NotFoundError."""
    with pytest.raises(NotFoundError, match="no video input device"):
        choose_device([MICROPHONE], "video", constraints, idle)


def test_a_required_background_blur_is_a_type_error_once_there_are_candidates() -> None:
    with pytest.raises(TypeError) as caught:
        choose_device([BIG], "video", {"backgroundBlur": {"exact": True}}, idle)
    assert not isinstance(caught.value, OverconstrainedError)


def test_only_devices_of_the_kind_are_candidates() -> None:
    devices = fake_devices()
    audio, _ = choose_device(devices, "audio", {}, idle)
    video, _ = choose_device(devices, "video", {}, idle)
    assert (audio.kind, video.kind) == ("audioinput", "videoinput")


@pytest.mark.parametrize("order", [[SMALL, BIG], [BIG, SMALL]], ids=["small first", "big first"])
def test_the_smallest_fitness_distance_wins(order: list[Device]) -> None:
    device, settings = choose_device(order, "video", {"width": {"ideal": 1920}}, idle)
    assert device is BIG and settings["width"] == 1920
    device, settings = choose_device(order, "video", {"frameRate": {"ideal": 60}}, idle)
    assert device is SMALL and settings["frameRate"] == 60


def test_a_tie_goes_to_the_first_device_the_default() -> None:
    for order in ([SMALL, BIG], [BIG, SMALL]):
        device, _ = choose_device(order, "video", {}, idle)
        assert device is order[0]


@pytest.mark.parametrize("name", ["deviceId", "groupId"])
def test_an_ideal_id_chooses_its_device(name: str) -> None:
    value = SMALL.device_id if name == "deviceId" else SMALL.group_id
    device, settings = choose_device([BIG, SMALL], "video", {name: value}, idle)
    assert device is SMALL
    assert (settings["deviceId"], settings["groupId"]) == (SMALL.device_id, SMALL.group_id)


def test_a_device_that_cannot_satisfy_is_passed_over() -> None:
    device, settings = choose_device([SMALL, BIG], "video", {"width": {"exact": 1600}}, idle)
    assert device is BIG and settings["width"] == 1600


def test_when_every_device_fails_on_one_constraint_it_is_named() -> None:
    with pytest.raises(OverconstrainedError) as caught:
        choose_device([SMALL, BIG], "video", {"width": {"min": 4000}}, idle)
    assert caught.value.constraint == "width"


def test_a_microphone_in_use_is_offered_only_as_it_runs() -> None:
    """1. Running at 16 kHz stereo: a new track gets that, whatever it prefers.
    2. Requiring 48 kHz cannot be met on it: OverconstrainedError sampleRate.
    3. `running` is asked about each candidate of the kind, and only those."""
    asked: list[Device] = []

    def running(device: Device) -> dict[str, Any] | None:
        asked.append(device)
        return {"sampleRate": 16000, "channelCount": 2}

    devices = [MICROPHONE, BIG]
    _, settings = choose_device(devices, "audio", {"sampleRate": 48000}, running)
    assert (settings["sampleRate"], settings["channelCount"]) == (16000, 2)
    with pytest.raises(OverconstrainedError) as caught:
        choose_device(devices, "audio", {"sampleRate": {"exact": 48000}}, running)
    assert caught.value.constraint == "sampleRate"
    assert asked == [MICROPHONE, MICROPHONE]


def test_an_idle_microphone_can_be_opened_in_any_of_its_modes() -> None:
    _, settings = choose_device([MICROPHONE], "audio", {"sampleRate": {"exact": 8000}}, idle)
    assert settings["sampleRate"] == 8000


# -- select_for_device --------------------------------------------------------------------------


def test_select_for_device_gives_settings_with_ids_and_the_distance() -> None:
    settings, distance = select_for_device(BIG, {"width": {"ideal": 3840}}, None)
    assert settings["width"] == 1920 and distance == pytest.approx((3840 - 1920) / 3840)
    assert (settings["deviceId"], settings["groupId"]) == (BIG.device_id, BIG.group_id)
    settings, distance = select_for_device(BIG, {}, None)
    assert (settings["width"], settings["height"], distance) == (640, 480, 0.0)  # the defaults


def test_select_for_device_on_a_running_microphone_keeps_its_mode() -> None:
    running = {"sampleRate": 44100, "channelCount": 1}
    settings, distance = select_for_device(MICROPHONE, {"channelCount": {"ideal": 2}}, running)
    assert (settings["sampleRate"], settings["channelCount"]) == (44100, 1)
    assert distance == pytest.approx(0.5)


# -- ring formats and the settings of a running source ------------------------------------------


def test_ring_format_of_video_and_audio_settings() -> None:
    video = {"width": 320, "height": 240, "frameRate": 15, "pixelFormat": "gray8"}
    assert ring_format(BIG, video) == (VideoFormat(320, 240, "gray8"), 15.0)
    without_format = {"width": 320, "height": 240, "frameRate": 15}
    assert ring_format(BIG, without_format) == (VideoFormat(320, 240, "bgr24"), 15.0)
    audio = {"sampleRate": 16000, "channelCount": 2}
    assert ring_format(MICROPHONE, audio) == (AudioFormat(16000, 2), 0.0)


@given(
    st.integers(1, 1920),
    st.integers(1, 1080),
    st.floats(1.0, 30.0),
    st.sampled_from(["bgr24", "rgb24", "gray8"]),
)
def test_chosen_video_settings_give_the_ring_that_runs_them(
    width: int, height: int, rate: float, pixel_format: str
) -> None:
    """Exact settings chosen on the camera make exactly that ring format, and
    the source running it reports the same mode back."""
    constraints = {
        "width": {"exact": width},
        "height": {"exact": height},
        "frameRate": {"exact": rate},
        "pixelFormat": {"exact": pixel_format},
    }
    settings, _ = select_for_device(BIG, constraints, None)
    fmt, frame_rate = ring_format(BIG, settings)
    assert (fmt, frame_rate) == (VideoFormat(width, height, pixel_format), rate)
    mode = settings_for_source(running_source(BIG, fmt, frame_rate))
    assert mode == {"width": width, "height": height, "frameRate": rate}


def test_settings_for_an_audio_source_are_its_rate_and_channels() -> None:
    source = running_source(MICROPHONE, AudioFormat(22050, 2))
    assert settings_for_source(source) == {"sampleRate": 22050, "channelCount": 2}
    settings, _ = select_for_device(MICROPHONE, {}, settings_for_source(source))
    assert ring_format(MICROPHONE, settings) == (AudioFormat(22050, 2), 0.0)


# -- settle_settings: resizeMode and the measured audio figures ----------------------------------

NATIVE = running_source(BIG, VideoFormat(640, 480), 30.0)
DERIVED = running_source(BIG, VideoFormat(320, 240), 15.0, parent=NATIVE)
CHOSEN = {"width": 320, "height": 240, "frameRate": 15.0, "resizeMode": "none"}
WHOLE_VGA = {"x": 0, "y": 0, "width": 640, "height": 480}
QVGA = {"x": 0, "y": 0, "width": 320, "height": 240}
DERIVED_RECTS = {"cropRect": WHOLE_VGA, "contentRect": QVGA}


def test_a_native_source_keeps_the_settings_and_shows_its_whole_frame() -> None:
    chosen = {**CHOSEN, "width": 640, "height": 480}
    settled = settle_settings(dict(chosen), {}, NATIVE)
    assert settled == {**chosen, "cropRect": WHOLE_VGA, "contentRect": WHOLE_VGA}


@pytest.mark.parametrize(
    "constraints",
    [{}, {"resizeMode": "none"}, {"resizeMode": {"exact": ["none", "crop-and-scale"]}}],
    ids=repr,
)
def test_a_derived_source_is_crop_and_scale(constraints: dict[str, Any]) -> None:
    settled = settle_settings(dict(CHOSEN), constraints, DERIVED)
    assert settled == {**CHOSEN, "resizeMode": "crop-and-scale", **DERIVED_RECTS}


def test_a_colour_only_source_can_meet_a_required_resize_mode_none() -> None:
    """Its pixels are the camera's, in another colour: nothing was resized."""
    colour = running_source(BIG, VideoFormat(640, 480, "rgb24"), 30.0, parent=NATIVE)
    chosen = {**CHOSEN, "width": 640, "height": 480}
    settled = settle_settings(dict(chosen), {"resizeMode": {"exact": "none"}}, colour)
    assert settled == {**chosen, "cropRect": WHOLE_VGA, "contentRect": WHOLE_VGA}


@pytest.mark.parametrize(
    "constraints",
    [{"resizeMode": {"exact": "none"}}, {"resizeMode": {"exact": ["none"]}}],
    ids=repr,
)
def test_a_derived_source_cannot_meet_a_required_resize_mode_none(
    constraints: dict[str, Any],
) -> None:
    """The message says what the camera runs at for the other tracks."""
    with pytest.raises(OverconstrainedError, match="640x480 30 fps") as caught:
        settle_settings(dict(CHOSEN), constraints, DERIVED)
    assert caught.value.constraint == "resizeMode"


def test_an_audio_source_adds_the_latency_and_block_size_it_measured() -> None:
    chosen = {"sampleRate": 48000, "channelCount": 1, "latency": 0.01}
    measured = running_source(
        MICROPHONE, AudioFormat(48000, 1), counters={"latency": 0.0213, "blockSize": 512.0}
    )
    settled = settle_settings(dict(chosen), {}, measured)
    assert settled == {**chosen, "latency": 0.0213, "blockSize": 512.0}
    not_yet = running_source(MICROPHONE, AudioFormat(48000, 1))
    assert settle_settings(dict(chosen), {}, not_yet) == chosen


def test_settle_settings_does_not_change_its_argument() -> None:
    chosen = dict(CHOSEN)
    settle_settings(chosen, {}, DERIVED)
    assert chosen == CHOSEN


@pytest.mark.parametrize(
    ("constraints", "shape"),
    [({"width": 320}, (240, 320, 3)), ({"height": 120}, (120, 160, 3))],
    ids=["width", "height"],
)
def test_one_side_asked_for_delivers_the_whole_picture_scaled(
    shared_devices: MediaDevices, constraints: dict[str, Any], shape: tuple[int, ...]
) -> None:
    """Against a real daemon: the fake camera is 4:3, so {"width": 320} is
    a 320x240 frame of the whole picture (it was 320x480, its middle strip),
    and {"height": 120} is 160x120."""
    track = shared_devices.getUserMedia({"video": constraints}).getVideoTracks()[0]
    try:
        settings = track.getSettings()
        assert (settings["height"], settings["width"]) == shape[:2], settings
        assert track.read(timeout=5).data.shape == shape
    finally:
        track.stop()


@pytest.mark.parametrize(
    "constraints",
    [
        {"video": True},
        {"video": {"width": 320}},
        {"video": {"pixelFormat": "gray8", "frameRate": 10}},
        {"audio": True},
        {"audio": {"sampleRate": 16000, "channelCount": 2}},
    ],
    ids=repr,
)
def test_every_setting_is_a_member_of_the_tracks_capabilities(
    shared_devices: MediaDevices, constraints: dict[str, Any]
) -> None:
    """The spec's invariant, for native, derived and audio tracks, over the
    constrainable properties (our extensions ``blockSize``, a measured
    figure, ``cropRect`` and ``contentRect``, where the pixels come from,
    and ``normalize``, a tensor format's parameter, are not ones); video
    capabilities include backgroundBlur [False] (no processing to switch)."""
    track = shared_devices.getUserMedia(constraints).getTracks()[0]
    try:
        capabilities, settings = track.getCapabilities(), track.getSettings()
        if track.kind == "video":
            assert capabilities["backgroundBlur"] == [False] and not settings["backgroundBlur"]
        for name, value in settings.items():
            if name in ("blockSize", "cropRect", "contentRect", "normalize"):
                continue
            assert name in capabilities, (name, capabilities)
            capability = capabilities[name]
            if isinstance(capability, dict):
                assert capability["min"] <= value <= capability["max"], (name, value, capability)
            elif isinstance(capability, list):
                assert value in capability, (name, value, capability)
            else:
                assert value == capability, (name, value, capability)
    finally:
        track.stop()


def test_a_stopped_microphone_frees_its_mode_during_its_idle_grace(tmp_path: Path) -> None:
    """The last track on a microphone stops; while its source lingers (idle
    grace 30 s) a request for another rate is met, not refused as if the
    microphone still ran at 48 kHz for somebody."""
    daemon = Daemon(tmp_path / "run", idle_close=30.0)
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            devices.getUserMedia({"audio": True}).getAudioTracks()[0].stop()
            again = devices.getUserMedia({"audio": {"sampleRate": {"exact": 16000}}})
            [track] = again.getAudioTracks()
            assert track.getSettings()["sampleRate"] == 16000
            track.stop()
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def test_an_unknown_constraint_is_ignored_and_logged_once_per_client(tmp_path: Path) -> None:
    """{"fps": 5} is ignored, as the spec says (the track runs at the
    camera's rate), and the daemon logs it at debug once for that client,
    however often it asks."""
    daemon = Daemon(tmp_path / "run")
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir, name="typo") as devices:
            for _ in range(3):
                track = devices.getUserMedia({"video": {"fps": 5}}).getVideoTracks()[0]
                assert track.getSettings()["frameRate"] == 30
                track.stop()
        assert daemon.terminate() == 0, daemon.log()
        assert daemon.log().count("asked for the unknown constraint 'video.fps'") == 1
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def camera_up_to(width: int, height: int, key: str) -> Device:
    base = fake_camera(key, f"camera up to {width}x{height}")
    capabilities = video_capabilities(base.device_id, base.group_id, width, height, 30.0)
    return dataclasses.replace(base, capabilities=capabilities)


@pytest.mark.parametrize(
    ("constraints", "failed"),
    [
        ({"width": {"min": 1500}}, "width"),  # neither can
        ({"width": {"min": 1000}, "height": {"min": 900}}, ""),  # each fails on another
        ({"width": {"min": 1000}, "height": {"min": 1100}}, "height"),  # both fail height
    ],
    ids=["both-width", "none-common", "both-height"],
)
def test_failed_constraint_is_one_no_device_meets_or_empty(
    constraints: dict[str, Any], failed: str
) -> None:
    """Checklist #99, the spec's getUserMedia: failedConstraint is a required
    constraint whose fitness distance was infinite on every device, or ""
    when there is none (it used to name the first device's failure, which
    another device met). Cameras up to 1280x720 and up to 640x1080."""
    devices = [camera_up_to(1280, 720, "wide"), camera_up_to(640, 1080, "tall")]
    with pytest.raises(OverconstrainedError) as caught:
        choose_device(devices, "video", constraints, lambda device: None)
    assert caught.value.constraint == failed, caught.value
