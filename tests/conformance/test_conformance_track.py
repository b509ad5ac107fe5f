"""MediaStreamTrack conformance: checklist 1B, #46-#72 (SPEC-CHECKLIST.md).

Numbers in docstrings are the checklist's; [S: ...] cites the spec
(w3c/mediacapture-main), [W: file] the WPT file in mediacapture-streams/.
Issue 3's extensions are tested here too and say so: applyConstraints
changing what a track delivers (size, rate, ``pixelFormat``), two sizes of
one device at once, and ``track.stats``.

Already covered elsewhere, not repeated here:
* tests/test_track.py: #28-#31 (initial state), #32/#33 (enabled, black
  frames), #36/#37 (stop), #43/#44 (clone), and the settings of a gUM track
  at 320x180 (#47 partly, #49 for one size).

Left out: #55 (orientation; the fake camera does not rotate).

The fake camera offers width 1..1920, height 1..1080, frameRate up to 30
(conftest.py). Frame rates are measured over many frames from their capture
timestamps, never from one frame, and with a generous tolerance: the CI
machine has two CPUs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from conftest import Gum
from mediastream import (
    AudioData,
    InputDeviceInfo,
    MediaDevices,
    MediaStreamTrack,
    OverconstrainedError,
    VideoFrame,
)
from support import Daemon

NUMERIC_CAPABILITIES = {
    "video": ("width", "height", "aspectRatio", "frameRate"),
    "audio": ("sampleRate", "sampleSize", "latency", "channelCount"),
}
BOOLEAN_CAPABILITIES = ("echoCancellation", "autoGainControl", "noiseSuppression")
REQUIRED_CAPABILITIES = {
    "video": (
        "width", "height", "aspectRatio", "frameRate", "facingMode", "resizeMode",
        "deviceId", "groupId",
    ),
    "audio": (
        "sampleRate", "sampleSize", "echoCancellation", "autoGainControl",
        "noiseSuppression", "latency", "channelCount", "deviceId", "groupId",
    ),
}
FACING_MODES = {"user", "environment", "left", "right"}
RESIZE_MODES = {"none", "crop-and-scale"}
ECHO_CANCELLATION_MODES = {"all", "remote-only"}
INHERENT_PROPERTIES = {"deviceId", "groupId", "facingMode"}
CAMERA_MAX = (1920, 1080, 30.0)
SMALL = {"width": {"exact": 160}, "height": {"exact": 120}}


def video_track(gum: Gum, constraints: Mapping[str, Any] | bool = True) -> MediaStreamTrack:
    return gum({"video": constraints}).getVideoTracks()[0]


def audio_track(gum: Gum, constraints: Mapping[str, Any] | bool = True) -> MediaStreamTrack:
    return gum({"audio": constraints}).getAudioTracks()[0]


def read_video(track: MediaStreamTrack, timeout: float = 5.0) -> VideoFrame:
    frame = track.read(timeout)
    assert isinstance(frame, VideoFrame)
    return frame


def first_frame_where(
    track: MediaStreamTrack, wanted: Callable[[VideoFrame], bool], what: str, timeout: float = 3.0
) -> VideoFrame:
    """Read until a frame satisfies ``wanted`` (frames captured before a change
    may still be in flight); fail with the last frame seen."""
    deadline = time.monotonic() + timeout
    frame = read_video(track)
    while not wanted(frame):
        if time.monotonic() > deadline:
            raise AssertionError(f"no frame with {what} within {timeout:g} s; last: {frame!r}")
        frame = read_video(track)
    return frame


def assert_delivers_shape(track: MediaStreamTrack, shape: tuple[int, ...]) -> None:
    """The track switches to ``shape`` and keeps delivering it."""
    first_frame_where(track, lambda f: f.data.shape == shape, f"shape {shape}")
    for _ in range(3):
        assert read_video(track).data.shape == shape


def delivered_rate(track: MediaStreamTrack, seconds: float = 1.5) -> float:
    """Frames the track delivers per second of capture time, over ``seconds``.

    Counts every frame a read returns (the reader keeps up at these sizes),
    divided by the span of their capture timestamps.
    """
    first = read_video(track)
    count, last = 0, first
    while last.timestamp - first.timestamp < seconds:
        last = read_video(track)
        count += 1
    return count / (last.timestamp - first.timestamp)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def within(value: object, capability: object) -> bool:
    """Whether a setting lies within a capability in the spec's shapes."""
    if isinstance(capability, Mapping):
        return is_number(value) and capability["min"] - 1e-9 <= value <= capability["max"] + 1e-9
    if isinstance(capability, list):
        return value in capability
    return value == capability


def assert_capability_shapes(capabilities: Mapping[str, Any], kind: str) -> None:
    """#58: the shape of every spec capability present."""
    for name in NUMERIC_CAPABILITIES[kind]:
        if name not in capabilities:
            continue
        value = capabilities[name]
        assert isinstance(value, dict) and set(value) == {"min", "max"}, (name, value)
        assert is_number(value["min"]) and is_number(value["max"]), (name, value)
        assert value["min"] <= value["max"], (name, value)
    for name in BOOLEAN_CAPABILITIES if kind == "audio" else ():
        if name not in capabilities:
            continue
        value = capabilities[name]
        assert isinstance(value, list), (name, value)
        flags = [v for v in value if isinstance(v, bool)]
        assert 1 <= len(flags) <= 2 and len(set(flags)) == len(flags), (name, value)
        # D3: echoCancellation may list its modes, after the booleans.
        modes = value[len(flags):]
        assert value[: len(flags)] == flags, (name, value)
        allowed = ECHO_CANCELLATION_MODES if name == "echoCancellation" else set()
        assert set(modes) <= allowed, (name, value)
    for name in ("deviceId", "groupId"):
        assert isinstance(capabilities[name], str) and capabilities[name], (name, capabilities)
    if kind == "video":
        facing = capabilities["facingMode"]
        assert isinstance(facing, list) and set(facing) <= FACING_MODES, facing
        resize = capabilities["resizeMode"]
        assert isinstance(resize, list) and RESIZE_MODES <= set(resize), resize


def devices_of(devices: MediaDevices, kind: str) -> list[InputDeviceInfo]:
    found = [d for d in devices.enumerateDevices() if d.kind == kind]
    assert all(isinstance(d, InputDeviceInfo) for d in found)
    return [d for d in found if isinstance(d, InputDeviceInfo)]


# getSettings()


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_settings_cover_the_capabilities(gum: Gum, kind: str) -> None:
    """#46 [S: Constrainable Pattern > Settings]: getSettings() has a key for every
    capability, and each value is one value within that capability."""
    track = gum({kind: True}).getTracks()[0]
    settings, capabilities = track.getSettings(), track.getCapabilities()
    # An empty list (facingMode of a camera that does not know it) offers no value.
    missing = sorted(k for k, c in capabilities.items() if c != [] and k not in settings)
    assert not missing, f"settings lack {missing}: {settings}"
    outside = {
        k: (settings[k], c)
        for k, c in capabilities.items()
        if k in settings and not within(settings[k], c)
    }
    assert not outside, f"settings outside their capability: {outside}"


def _int_at_least_0(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number_at_least_0(v: object) -> bool:
    return is_number(v) and v >= 0  # type: ignore[operator]


def _number_above_0(v: object) -> bool:
    return is_number(v) and v > 0  # type: ignore[operator]


def _nonempty_str(v: object) -> bool:
    return isinstance(v, str) and v != ""


VIDEO_SETTING_TYPES: dict[str, Callable[[object], bool]] = {
    "deviceId": _nonempty_str,
    "groupId": _nonempty_str,
    "width": _int_at_least_0,
    "height": _int_at_least_0,
    "aspectRatio": _number_at_least_0,
    "frameRate": _number_at_least_0,
    "resizeMode": lambda v: v in RESIZE_MODES,
}
AUDIO_SETTING_TYPES: dict[str, Callable[[object], bool]] = {
    "deviceId": _nonempty_str,
    "groupId": _nonempty_str,
    "sampleRate": _number_above_0,
    "sampleSize": _number_above_0,
    # D3: a bool; the spec also allows "all"/"remote-only" once modes exist.
    "echoCancellation": lambda v: isinstance(v, bool) or v in ECHO_CANCELLATION_MODES,
    "autoGainControl": lambda v: isinstance(v, bool),
    "noiseSuppression": lambda v: isinstance(v, bool),
    "latency": _number_at_least_0,
    "channelCount": _number_above_0,
}


@pytest.mark.parametrize("key", sorted(VIDEO_SETTING_TYPES))
def test_video_settings_key_and_type(gum: Gum, key: str) -> None:
    """#47 [W: MediaStreamTrack-getSettings, one test per key]."""
    settings = video_track(gum).getSettings()
    assert key in settings, f"video settings lack {key}: {settings}"
    assert VIDEO_SETTING_TYPES[key](settings[key]), f"{key}={settings[key]!r}"


def test_video_settings_facing_mode_is_optional(gum: Gum) -> None:
    """#47 [W: MediaStreamTrack-getSettings]: facingMode, when the platform knows
    it, is one of the VideoFacingModeEnum values."""
    settings = video_track(gum).getSettings()
    assert settings.get("facingMode", "user") in FACING_MODES


@pytest.mark.parametrize("key", sorted(AUDIO_SETTING_TYPES))
def test_audio_settings_key_and_type(gum: Gum, key: str) -> None:
    """#48 [W: MediaStreamTrack-getSettings]; `volume` left out (D2)."""
    settings = audio_track(gum).getSettings()
    assert key in settings, f"audio settings lack {key}: {settings}"
    assert AUDIO_SETTING_TYPES[key](settings[key]), f"{key}={settings[key]!r}"
    assert "volume" not in settings


def test_aspect_ratio_follows_applied_size(gum: Gum) -> None:
    """#49 [S: aspectRatio row]: width/height rounded to 10 decimals, also after
    applyConstraints (test_track.py checks it for a gUM size)."""
    track = video_track(gum)
    track.applyConstraints({"width": {"exact": 1000}, "height": {"exact": 700}})
    assert track.getSettings()["aspectRatio"] == round(1000 / 700, 10)


def test_frame_rate_setting_is_the_decimated_rate(gum: Gum) -> None:
    """#50 [S: frameRate row]: the setting is the configured (decimated) rate, and
    the track delivers about that many frames per second."""
    track = video_track(gum, {**SMALL, "frameRate": {"exact": 10}})
    assert track.getSettings()["frameRate"] == 10
    rate = delivered_rate(track)
    assert 7 <= rate <= 13, f"delivered {rate:.1f} frames/s at frameRate 10"


def test_device_opened_twice_has_the_same_device_id(gum: Gum) -> None:
    """#51 [W: MediaStreamTrack-getSettings :: "A device can be opened twice and
    have the same device ID"]."""
    first = video_track(gum).getSettings()
    second = video_track(gum, {"deviceId": first["deviceId"]}).getSettings()
    assert second["deviceId"] == first["deviceId"]


def test_device_opened_twice_at_two_sizes_delivers_both(gum: Gum) -> None:
    """#52 [W: MediaStreamTrack-getSettings :: "A device can be opened twice with
    different resolutions"], and issue 3: each track gets frames of its own size.

    1. Open the camera at its default size; keep the track live.
    2. Open it again with width exact half of the first: the setting says so.
    3. Both tracks deliver frames of their own settings' size, read alternately.
    """
    first = video_track(gum)
    s1 = first.getSettings()
    second = video_track(gum, {"deviceId": s1["deviceId"], "width": {"exact": s1["width"] // 2}})
    s2 = second.getSettings()
    assert s2["width"] == s1["width"] // 2 and s2["deviceId"] == s1["deviceId"]
    for _ in range(3):
        assert read_video(first).data.shape[:2] == (s1["height"], s1["width"])
        assert read_video(second).data.shape[:2] == (s2["height"], s2["width"])
    assert first.readyState == second.readyState == "live"


def test_group_id_matches_enumeration_for_every_device(
    shared_devices: MediaDevices, gum: Gum
) -> None:
    """#53 [W: MediaStreamTrack-getSettings :: "groupId is correctly reported by
    getSettings() for all devices"]."""
    inputs = [d for d in shared_devices.enumerateDevices() if d.kind != "audiooutput"]
    assert inputs
    for device in inputs:
        kind = "video" if device.kind == "videoinput" else "audio"
        stream = gum({kind: {"deviceId": {"exact": device.deviceId}}})
        assert stream.getTracks()[0].getSettings()["groupId"] == device.groupId
        assert len(device.groupId) > 0


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_ended_track_settings_keep_only_inherent_properties(gum: Gum, kind: str) -> None:
    """#54 [S: getSettings(); spec-derived, no WPT]: once ended, getSettings() has
    only deviceId, groupId (and facingMode), with the values it had."""
    track = gum({kind: True}).getTracks()[0]
    live = track.getSettings()
    track.stop()
    ended = track.getSettings()
    assert set(ended) <= INHERENT_PROPERTIES, ended
    assert {k: ended[k] for k in ("deviceId", "groupId")} == {
        k: live[k] for k in ("deviceId", "groupId")
    }
    if "facingMode" in live:
        assert ended["facingMode"] == live["facingMode"]


# getCapabilities()


def test_tracks_on_one_device_share_capabilities(gum: Gum) -> None:
    """#56 [S: Terminology > Capability]: tracks of one source report the same
    capabilities while their settings differ; so does a clone."""
    big = video_track(gum)
    small = video_track(gum, SMALL)
    clone = small.clone()
    assert big.getSettings()["width"] != small.getSettings()["width"]
    assert big.getCapabilities() == small.getCapabilities() == clone.getCapabilities()


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_capabilities_have_the_spec_keys(gum: Gum, kind: str) -> None:
    """#57 [W: MediaStreamTrack-getCapabilities :: "<kind> track getCapabilities()
    <name> property present."]."""
    capabilities = gum({kind: True}).getTracks()[0].getCapabilities()
    missing = [name for name in REQUIRED_CAPABILITIES[kind] if name not in capabilities]
    assert not missing, f"{kind} capabilities lack {missing}: {capabilities}"


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_capability_shapes(gum: Gum, kind: str) -> None:
    """#58 [W: MediaStreamTrack-getCapabilities :: "... properly supported."]:
    numeric ranges are exactly {min, max}; booleans a list; ids a str; facingMode
    a list of the enum; resizeMode holds "none" and "crop-and-scale"."""
    track = gum({kind: True}).getTracks()[0]
    capabilities = track.getCapabilities()
    assert_capability_shapes(capabilities, kind)
    assert capabilities["deviceId"] == track.getSettings()["deviceId"]
    assert capabilities["groupId"] == track.getSettings()["groupId"]


def test_video_capability_ranges(gum: Gum) -> None:
    """#59 [S: Constrainable Properties, video table]: width and height from 1 to
    the native maximum; frameRate up to the native rate.

    The spec's "min being equal to 0" for frameRate is a lowercase should; the
    daemon reports its lowest decimated rate, so only min >= 0 is checked.
    """
    capabilities = video_track(gum).getCapabilities()
    width, height, rate = CAMERA_MAX
    assert capabilities["width"] == {"min": 1, "max": width}
    assert capabilities["height"] == {"min": 1, "max": height}
    assert capabilities["frameRate"]["max"] == rate
    assert 0 <= capabilities["frameRate"]["min"] <= 1


@pytest.mark.parametrize("size", [(1, 1), (333, 77), (1919, 1079)], ids=str)
def test_any_size_down_to_one_pixel_is_delivered(
    own_devices: MediaDevices, size: tuple[int, int]
) -> None:
    """#59 [S: "MUST support downscaling to any size between min and native"]:
    odd sizes too, in the settings and in the frames. On a daemon of its own,
    so that the camera opens in this size, whatever other tests left open."""
    width, height = size
    constraints = {"width": {"exact": width}, "height": {"exact": height}}
    track = own_devices.getUserMedia({"video": constraints}).getVideoTracks()[0]
    settings = track.getSettings()
    assert (settings["width"], settings["height"]) == size
    assert read_video(track).data.shape[:2] == (height, width)


def test_a_closing_source_does_not_limit_the_next_open(own_devices: MediaDevices) -> None:
    """#59 with issue 3: a source whose last track stopped (closing after its
    grace) does not cap the size of the next request.

    1. Open the camera at 320x240, read a frame, stop the track.
    2. Open it at once at 1280x720: it is that size, in settings and frames.
    """
    small = {"width": {"exact": 320}, "height": {"exact": 240}}
    track = own_devices.getUserMedia({"video": small}).getVideoTracks()[0]
    read_video(track)
    track.stop()
    big = {"width": {"exact": 1280}, "height": {"exact": 720}}
    track = own_devices.getUserMedia({"video": big}).getVideoTracks()[0]
    assert (track.getSettings()["width"], track.getSettings()["height"]) == (1280, 720)
    assert read_video(track).data.shape == (720, 1280, 3)


def test_a_live_smaller_track_does_not_limit_a_larger_open(own_devices: MediaDevices) -> None:
    """#52/#56/#72 with issue 3 ("the same device can be open at several sizes at
    once"): the larger size asked second is within the capabilities, so it is
    granted, and the first track keeps its own size.

    1. Open the camera at 320x240 and keep the track live.
    2. Open it again at 1280x720: granted.
    3. Both deliver their own sizes; the first track's settings keep its
       size, rate and format, and once it unmutes say how its frames are
       now made (the camera was re-opened at 1280x720: the middle 960x720,
       scaled).
    """
    small = {"width": {"exact": 320}, "height": {"exact": 240}}
    first = own_devices.getUserMedia({"video": small}).getVideoTracks()[0]
    read_video(first)
    before = first.getSettings()
    unmuted = threading.Event()
    first.addEventListener("unmute", lambda event: unmuted.set())
    big = {"width": {"exact": 1280}, "height": {"exact": 720}}
    second = own_devices.getUserMedia({"video": big}).getVideoTracks()[0]
    assert (second.getSettings()["width"], second.getSettings()["height"]) == (1280, 720)
    assert_delivers_shape(second, (720, 1280, 3))
    assert_delivers_shape(first, (240, 320, 3))
    assert unmuted.wait(10), "the first track never unmuted after the re-open"
    after = first.getSettings()
    framing = {"resizeMode", "cropRect", "contentRect"}
    assert {k: v for k, v in after.items() if k not in framing} == {
        k: v for k, v in before.items() if k not in framing
    }
    assert before["resizeMode"] == "none" and after["resizeMode"] == "crop-and-scale"
    assert after["cropRect"] == {"x": 160, "y": 0, "width": 960, "height": 720}


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_integral_decimations_of_the_native_rate(gum: Gum, factor: int) -> None:
    """#59 [S: "frame rates obtained by integral decimation" are required]."""
    rate = CAMERA_MAX[2] / factor
    track = video_track(gum, {**SMALL, "frameRate": {"exact": rate}})
    assert track.getSettings()["frameRate"] == rate


def test_boolean_capabilities_bind_the_settings(gum: Gum) -> None:
    """#60 [S: MediaTrackCapabilities members]: [False] is "not supported", [True]
    "cannot be turned off"; the setting is in the list, and an exact value
    outside it fails naming the constraint."""
    capabilities = audio_track(gum).getCapabilities()
    for name in BOOLEAN_CAPABILITIES:
        flags = [v for v in capabilities[name] if isinstance(v, bool)]
        setting = audio_track(gum, {name: flags[0]}).getSettings()[name]
        assert setting in flags, (name, setting, flags)
        if len(flags) == 1:
            with pytest.raises(OverconstrainedError) as caught:
                gum({"audio": {name: {"exact": not flags[0]}}})
            assert caught.value.constraint == name
        else:
            for value in (True, False):
                exact = audio_track(gum, {name: {"exact": value}})
                assert exact.getSettings()[name] is value


@pytest.mark.parametrize("kind", ["videoinput", "audioinput"])
def test_input_device_info_capabilities_match_a_fresh_track(
    shared_devices: MediaDevices, gum: Gum, kind: str
) -> None:
    """#61 [W: MediaStreamTrack-getCapabilities, "... InputDeviceInfo ..."]
    [S: InputDeviceInfo]: the same keys and shapes as a track, and equal to what
    a fresh gUM({deviceId}) track reports."""
    media = "video" if kind == "videoinput" else "audio"
    for device in devices_of(shared_devices, kind):
        capabilities = device.getCapabilities()
        missing = [n for n in REQUIRED_CAPABILITIES[media] if n not in capabilities]
        assert not missing, f"{device.label}: capabilities lack {missing}"
        assert_capability_shapes(capabilities, media)
        track = gum({media: {"deviceId": {"exact": device.deviceId}}}).getTracks()[0]
        assert capabilities == track.getCapabilities()


def test_input_device_info_capabilities_before_any_capture(shared_daemon: Daemon) -> None:
    """#61 with #78 (section 4.2): the daemon exposes everything, so a session that
    never captured still gets full capabilities, not {}."""
    with MediaDevices(shared_daemon.run_dir, name="never-captured") as fresh:
        for kind in ("videoinput", "audioinput"):
            for device in devices_of(fresh, kind):
                assert device.getCapabilities()["deviceId"] == device.deviceId


# getConstraints() / applyConstraints()


def test_get_constraints_after_get_user_media(gum: Gum) -> None:
    """#62 [S: getConstraints; gUM runs ApplyConstraints on the new track]: `true`
    is the empty set; a dict comes back as given, in its order."""
    assert video_track(gum).getConstraints() == {}
    constraints = {"height": {"min": 100}, "width": 320, "frameRate": {"ideal": 15}}
    got = video_track(gum, constraints).getConstraints()
    assert got == constraints and list(got) == list(constraints)


def test_apply_constraints_changes_settings_and_frames(gum: Gum) -> None:
    """#63 [S: applyConstraints template] and issue 3: returns None; then
    getConstraints() and getSettings() show the change, and the frames have
    the new size."""
    track = video_track(gum)
    constraints = {"width": {"exact": 320}, "height": {"exact": 240}}
    assert track.applyConstraints(constraints) is None
    assert track.getConstraints() == constraints
    settings = track.getSettings()
    assert (settings["width"], settings["height"]) == (320, 240)
    assert settings["aspectRatio"] == round(320 / 240, 10)
    assert_delivers_shape(track, (240, 320, 3))


def test_failed_apply_constraints_changes_nothing(gum: Gum) -> None:
    """#64 [S: applyConstraints step 4.3.1; "rejected, without applying any of the
    new constraints"]: OverconstrainedError naming the constraint; constraints,
    settings and frames stay as they were."""
    track = video_track(gum)
    track.applyConstraints(SMALL)
    constraints, settings = track.getConstraints(), track.getSettings()
    with pytest.raises(OverconstrainedError) as caught:
        track.applyConstraints({"width": {"min": 100000000}, "height": {"exact": 240}})
    assert caught.value.constraint == "width"
    assert track.getConstraints() == constraints
    assert track.getSettings() == settings
    assert_delivers_shape(track, (120, 160, 3))


def test_apply_invalid_exact_group_id(gum: Gum) -> None:
    """#65 [W: MediaStreamTrack-applyConstraints :: "applyConstraints rejects
    invalid groupID"]."""
    track = video_track(gum)
    with pytest.raises(OverconstrainedError) as caught:
        track.applyConstraints({"groupId": {"exact": "INVALID"}})
    assert caught.value.constraint == "groupId"


def test_apply_invalid_ideal_group_id(gum: Gum) -> None:
    """#66 [W: MediaStreamTrack-applyConstraints :: "applyConstraints accepts invalid
    ideal groupID, does not change setting"]."""
    track = video_track(gum)
    group = track.getSettings()["groupId"]
    assert track.applyConstraints({"groupId": "INVALID"}) is None
    assert track.getSettings()["groupId"] == group


@pytest.mark.parametrize("name", ["groupId", "deviceId"])
def test_apply_cannot_switch_device(shared_devices: MediaDevices, gum: Gum, name: str) -> None:
    """#67 [W: MediaStreamTrack-applyConstraints :: "applyConstraints rejects attempt
    to switch device using groupId"] [S: deviceId/groupId rows]: another device's
    id, exact, is unsatisfiable; the track keeps its device."""
    track = video_track(gum)
    settings = track.getSettings()
    other = next(d for d in shared_devices.enumerateDevices() if d.kind == "audioinput")
    value = other.groupId if name == "groupId" else other.deviceId
    assert value != settings[name]
    with pytest.raises(OverconstrainedError) as caught:
        track.applyConstraints({name: {"exact": value}})
    assert caught.value.constraint == name
    assert track.getSettings()["deviceId"] == settings["deviceId"]


def test_apply_invalid_exact_resize_mode(gum: Gum) -> None:
    """#68 [W: MediaStreamTrack-applyConstraints :: "applyConstraints rejects
    invalid resizeMode"]."""
    track = video_track(gum)
    with pytest.raises(OverconstrainedError) as caught:
        track.applyConstraints({"resizeMode": {"exact": "INVALID"}})
    assert caught.value.constraint == "resizeMode"


def test_apply_invalid_ideal_resize_mode(gum: Gum) -> None:
    """#68 [W: MediaStreamTrack-applyConstraints :: "applyConstraints accepts
    invalid ideal resizeMode, does not change setting"]."""
    track = video_track(gum)
    mode = track.getSettings()["resizeMode"]
    assert track.applyConstraints({"resizeMode": "INVALID"}) is None
    assert track.getSettings()["resizeMode"] == mode


def test_apply_constraints_on_an_ended_track_does_nothing(gum: Gum) -> None:
    """#69 [S: applyConstraints() step 2; spec-derived, no WPT]: returns None at
    once, even for an impossible set, and changes nothing."""
    track = video_track(gum, SMALL)
    track.stop()
    constraints, settings = track.getConstraints(), track.getSettings()
    assert track.applyConstraints({"width": {"min": 100000000}}) is None
    assert track.applyConstraints({"width": {"exact": 320}}) is None
    assert track.getConstraints() == constraints
    assert track.getSettings() == settings


def test_apply_constraints_calls_take_effect_in_call_order(gum: Gum) -> None:
    """#70 [S: "maintaining the order of invocations"]: the last call wins."""
    track = video_track(gum)
    for width, height in [(320, 240), (200, 100), (160, 120)]:
        track.applyConstraints({"width": {"exact": width}, "height": {"exact": height}})
    assert track.getConstraints() == SMALL
    assert (track.getSettings()["width"], track.getSettings()["height"]) == (160, 120)
    assert_delivers_shape(track, (120, 160, 3))


def test_concurrent_apply_constraints_apply_whole_sets(gum: Gum) -> None:
    """#70 with section 2.4 step 3 ("as one operation"): calls racing from four
    threads are serialised; what remains is one caller's set, whole, and the
    settings and frames agree with it."""
    track = video_track(gum)
    sizes = [(320, 240), (200, 100), (160, 120), (256, 144)]
    barrier = threading.Barrier(len(sizes))
    failures: list[BaseException] = []

    def apply(width: int, height: int) -> None:
        barrier.wait()
        try:
            track.applyConstraints({"width": {"exact": width}, "height": {"exact": height}})
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=apply, args=size) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    constraints = track.getConstraints()
    width, height = constraints["width"]["exact"], constraints["height"]["exact"]
    assert (width, height) in sizes
    assert (track.getSettings()["width"], track.getSettings()["height"]) == (width, height)
    assert_delivers_shape(track, (height, width, 3))


def test_apply_constraints_without_argument_removes_all_constraints(gum: Gum) -> None:
    """#71 [S: IDL default {}; ApplyConstraints step 3] with section 2.3 step 6
    (ties go to the defaults): no argument is {}; the track is back to what
    gUM({video: true}) gives."""
    default = video_track(gum).getSettings()
    track = video_track(gum, SMALL)
    assert track.applyConstraints() is None
    assert track.getConstraints() == {}
    settings = track.getSettings()
    assert (settings["width"], settings["height"]) == (default["width"], default["height"])
    assert_delivers_shape(track, (default["height"], default["width"], 3))


def test_constraints_on_a_clone_leave_the_original_alone(gum: Gum) -> None:
    """#72 and #44 [S: "different constraints applied for different consumers"]:
    issue 3 gives each size its own derived source, so shrinking a clone leaves
    the original's constraints, settings and frames as they were."""
    original = video_track(gum)
    before = original.getSettings()
    clone = original.clone()
    clone.applyConstraints(SMALL)
    assert clone.getConstraints() == SMALL and original.getConstraints() == {}
    assert original.getSettings() == before
    assert_delivers_shape(clone, (120, 160, 3))
    assert_delivers_shape(original, (before["height"], before["width"], 3))


# Issue 3: what a track delivers follows its constraints


def test_apply_frame_rate_decimates_delivery(gum: Gum) -> None:
    """Issue 3 with #50: applyConstraints({frameRate: 10}) on a 30 frames/s track
    brings the delivered rate from about 30 to about 10 frames/s."""
    track = video_track(gum, SMALL)
    before = delivered_rate(track)
    assert before >= 18, f"delivered {before:.1f} frames/s before decimation"
    track.applyConstraints({**SMALL, "frameRate": {"exact": 10}})
    assert track.getSettings()["frameRate"] == 10
    read_video(track)  # frames from before the change may still be in flight
    after = delivered_rate(track)
    assert 7 <= after <= 13, f"delivered {after:.1f} frames/s at frameRate 10"


def test_pixel_format_defaults_to_bgr24(gum: Gum) -> None:
    """Issue 3 (non-standard pixelFormat): bgr24 unless asked; a capability too."""
    track = video_track(gum, SMALL)
    assert track.getSettings()["pixelFormat"] == "bgr24"
    assert {"bgr24", "rgb24", "gray8"} <= set(track.getCapabilities()["pixelFormat"])
    frame = read_video(track)
    assert frame.format == "bgr24" and frame.data.shape == (120, 160, 3)


def _digest(data: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest()


def test_rgb24_is_bgr24_with_channels_reversed(gum: Gum) -> None:
    """Issue 3 (pixelFormat): an rgb24 frame is the bgr24 frame of the same capture
    with its channels reversed.

    1. Open the camera twice at one size, bgr24 and rgb24.
    2. Read 20 frames from each, alternately, keeping private copies.
    3. Some rgb24 frame, channels reversed, equals some bgr24 frame byte for byte.
    """
    bgr = video_track(gum, {**SMALL, "pixelFormat": "bgr24"})
    rgb = video_track(gum, {**SMALL, "pixelFormat": "rgb24"})
    assert rgb.getSettings()["pixelFormat"] == "rgb24"
    bgr_seen, rgb_seen = set(), set()
    for _ in range(20):
        bgr_seen.add(_digest(read_video(bgr).copy().data))
        frame = read_video(rgb).copy()
        assert frame.format == "rgb24" and frame.data.shape == (120, 160, 3)
        rgb_seen.add(_digest(frame.data[..., ::-1]))
    assert bgr_seen & rgb_seen, "no rgb24 frame is a bgr24 frame with its channels reversed"


def test_gray8_frames_are_two_dimensional(gum: Gum) -> None:
    """Issue 3 (pixelFormat): gray8 frames are (height, width) uint8."""
    track = video_track(gum, {**SMALL, "pixelFormat": "gray8"})
    assert track.getSettings()["pixelFormat"] == "gray8"
    frame = read_video(track)
    assert frame.format == "gray8"
    assert frame.data.shape == (120, 160) and frame.data.dtype == np.uint8
    assert frame.data.any()


def test_apply_pixel_format_switches_the_frames(gum: Gum) -> None:
    """Issue 3 with #63: applyConstraints({pixelFormat}) changes the frames' format."""
    track = video_track(gum, SMALL)
    track.applyConstraints({**SMALL, "pixelFormat": {"exact": "gray8"}})
    assert track.getSettings()["pixelFormat"] == "gray8"
    frame = first_frame_where(track, lambda f: f.format == "gray8", "format gray8")
    assert frame.data.shape == (120, 160)


def test_unknown_pixel_format_is_overconstrained(gum: Gum) -> None:
    """Issue 3 with #64: an exact pixelFormat the daemon lacks names pixelFormat."""
    with pytest.raises(OverconstrainedError) as caught:
        gum({"video": {"pixelFormat": {"exact": "yuv420p"}}})
    assert caught.value.constraint == "pixelFormat"
    track = video_track(gum, SMALL)
    with pytest.raises(OverconstrainedError) as caught:
        track.applyConstraints({"pixelFormat": {"exact": "yuv420p"}})
    assert caught.value.constraint == "pixelFormat"
    assert track.getSettings()["pixelFormat"] == "bgr24"


# Issue 3: track.stats (test_track.py covers the skip counting of read())


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_stats_total_is_delivered_plus_discarded(gum: Gum, kind: str) -> None:
    """Issue 3 [W: mediacapture-extensions MediaStreamTrack-video-stats ::
    "totalFrames is the sum of deliveredFrames and discardedFrames"]; audio
    counts sample frames."""
    track = gum({kind: True}).getTracks()[0]
    start = track.stats
    read = 0
    for _ in range(5):
        item = track.read(timeout=5)
        read += item.numberOfFrames if isinstance(item, AudioData) else 1
    stats = track.stats
    assert set(stats) >= {"deliveredFrames", "discardedFrames", "totalFrames"}
    assert all(isinstance(stats[k], int) and stats[k] >= 0 for k in stats)
    assert stats["totalFrames"] == stats["deliveredFrames"] + stats["discardedFrames"]
    assert stats["deliveredFrames"] - start["deliveredFrames"] >= read


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_stats_are_cumulative_and_survive_stop(gum: Gum, kind: str) -> None:
    """Issue 3: the counters never go backwards; stopping a track freezes them
    rather than resetting them."""
    track = gum({kind: True}).getTracks()[0]
    for _ in range(3):
        track.read(timeout=5)
    before = track.stats
    track.stop()
    after = track.stats
    assert before["deliveredFrames"] > 0
    for key in ("deliveredFrames", "discardedFrames", "totalFrames"):
        assert after[key] >= before[key], (key, before, after)
    assert after == track.stats


def test_clone_stats_start_from_a_new_baseline(gum: Gum) -> None:
    """Issue 3 [W: mediacapture-extensions MediaStreamTrack-video-stats :: "New
    stats baselines when a track is cloned from an enabled track"]."""
    track = video_track(gum, SMALL)
    for _ in range(10):
        read_video(track)
    clone = track.clone()
    assert clone.stats["deliveredFrames"] < track.stats["deliveredFrames"]
    assert clone.stats["totalFrames"] < track.stats["totalFrames"]
