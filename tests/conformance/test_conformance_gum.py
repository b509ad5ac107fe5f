"""getUserMedia conformance: checklist 1E, #83-#107 (SPEC-CHECKLIST.md).

Numbers in docstrings are the checklist's; [S: ...] cites the spec's
getUserMedia algorithm, [W: file] the WPT file in mediacapture-streams/.
getUserMedia blocks and returns what the promise resolves to, or raises what
it rejects with (`ConstraintTypeError`, a builtin TypeError, or the
DOMException classes).

Already covered elsewhere, not repeated here:
* tests/test_devices.py: #83/#84 for None, {}, both False and {"foo": True};
  TypeError for malformed values; #89-style names for width/height/frameRate/
  deviceId/channelCount; #96 for a bare width; #104 (InvalidStateError once
  closed); #106's deviceId selection for the microphone.
* tests/test_conformance_track.py: #51 (re-opening gives the same deviceId),
  #52 (two sizes at once).

Left out:
* #101 (NotAllowedError from permission denial): it maps to the daemon's access
  policy, which another engineer is building; its tests come with it.
* #102 (NotReadableError for a device locked outside the daemon) and #103
  (AbortError): the fake devices have no way to fail at open; they need a
  fake-device failure mode first.
D1/#100: the daemon always reports the real constraint name, also to a session
that never captured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from conftest import Gum
from mediastream import (
    ConstraintTypeError,
    MediaDevices,
    MediaStream,
    MediaStreamTrack,
    NotFoundError,
    OverconstrainedError,
    VideoFrame,
)
from support import Daemon

HUGE = 100000000

VIDEO_ONLY_VALID = {
    "width": {"min": 0},
    "height": {"min": 0},
    "frameRate": {"min": 0},
    "aspectRatio": {"min": 0},
    "facingMode": {"ideal": "environment"},
    "resizeMode": {"ideal": "none"},
}
VIDEO_ONLY_INVALID = {
    "width": {"min": HUGE},
    "height": {"min": HUGE},
    "frameRate": {"min": HUGE},
    "aspectRatio": {"min": HUGE},
    "facingMode": {"exact": "invalid"},
    "resizeMode": {"exact": "invalid"},
    "pixelFormat": {"exact": "invalid"},  # issue 3's extension is video-only too
}
AUDIO_ONLY_VALID = {
    "sampleRate": {"min": 0},
    "sampleSize": {"min": 0},
    "echoCancellation": {"ideal": True},
    "autoGainControl": {"ideal": True},
    "noiseSuppression": {"ideal": True},
    "latency": {"min": 0},
    "channelCount": {"min": 0},
}
AUDIO_ONLY_INVALID = {
    "sampleRate": {"min": HUGE},
    "sampleSize": {"min": HUGE},
    "echoCancellation": {"exact": True},
    "autoGainControl": {"exact": True},
    "noiseSuppression": {"exact": True},
    "latency": {"max": 0},
    "channelCount": {"max": 0},
}


def only_track(stream: MediaStream) -> MediaStreamTrack:
    (track,) = stream.getTracks()
    return track


def overconstrained(gum: Gum, constraints: Mapping[str, Any]) -> OverconstrainedError:
    with pytest.raises(OverconstrainedError) as caught:
        gum(constraints)
    return caught.value


def satisfies(value: object, constraint: object) -> bool:
    """Section 2.2's "satisfies" for the required part of one constraint."""
    if not isinstance(constraint, Mapping):
        return True  # a bare value in the basic set is only ideal
    tolerance = 1e-9

    def close(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return math.isclose(a, b, rel_tol=tolerance)
        return bool(a == b)

    checks = [
        "min" not in constraint or value >= constraint["min"] - tolerance,  # type: ignore[operator]
        "max" not in constraint or value <= constraint["max"] + tolerance,  # type: ignore[operator]
        "exact" not in constraint or close(value, constraint["exact"]),
    ]
    return all(checks)


# Argument handling


def test_no_argument_is_a_type_error(shared_devices: MediaDevices) -> None:
    """#83 [W: MediaStream-GUM :: "... rejected with a TypeError when used with an
    empty options parameter"]: getUserMedia() with no argument at all."""
    with pytest.raises(TypeError):
        shared_devices.getUserMedia()


@pytest.mark.parametrize(
    "constraints",
    [{"audio": False}, {"video": False}, {"doesnotexist": True, "video": False}],
    ids=repr,
)
def test_nothing_requested_is_a_plain_type_error(
    shared_devices: MediaDevices, constraints: dict[str, Any]
) -> None:
    """#84 [W: GUM-unknownkey-option-param] [S: requestedMediaTypes]: a
    TypeError, not a DOMException (named "TypeError": our `ConstraintTypeError`,
    a builtin TypeError too), with no constraint name."""
    with pytest.raises(TypeError) as caught:
        shared_devices.getUserMedia(constraints)
    assert isinstance(caught.value, ConstraintTypeError)
    assert caught.value.name == "TypeError"
    assert not hasattr(caught.value, "constraintName")
    assert not hasattr(caught.value, "constraint")


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_an_empty_dict_is_a_request(gum: Gum, kind: str) -> None:
    """#84 [S: requestedMediaTypes]: {video: {}} requests video."""
    assert only_track(gum({kind: {}})).kind == kind


def test_required_constraint_outside_the_selection_list_is_a_type_error(gum: Gum) -> None:
    """#85 [S: gUM "If CS contains a member that is a required constraint and whose
    name is not in the list..."]: backgroundBlur may not be required."""
    with pytest.raises(TypeError):
        gum({"video": {"backgroundBlur": {"exact": True}}})


def test_ideal_background_blur_is_no_error(gum: Gum) -> None:
    """#85 [S: only *required* constraints are checked against the list]: an ideal
    backgroundBlur is no error (and, unsupported, is ignored)."""
    assert only_track(gum({"video": {"backgroundBlur": True}})).kind == "video"


def test_background_blur_inside_audio_is_dropped_before_the_check(gum: Gum) -> None:
    """#85 with #88 [S: gUM step 3 removes the properties not defined for the kind,
    step 4 then checks the required ones]: backgroundBlur is a video property,
    so inside "audio" it is dropped, even when required."""
    assert only_track(gum({"audio": {"backgroundBlur": {"exact": True}}})).kind == "audio"


def test_true_is_the_empty_constraint_set(gum: Gum) -> None:
    """#86 [S: MediaStreamConstraints; gUM "set CS to the empty constraint set"]."""
    assert only_track(gum({"video": True})).getConstraints() == {}
    assert only_track(gum({"audio": True})).getConstraints() == {}


@pytest.mark.parametrize(
    ("constraints", "audio", "video"),
    [
        ({"audio": True}, 1, 0),
        ({"video": True}, 0, 1),
        ({"audio": True, "video": True}, 1, 1),
        ({"audio": True, "video": False}, 1, 0),
        ({"audio": False, "video": {"width": 320}}, 0, 1),
    ],
    ids=repr,
)
def test_one_track_per_requested_kind(
    gum: Gum, constraints: dict[str, Any], audio: int, video: int
) -> None:
    """#86, #87 [W: MediaStream-audio-only; MediaStream-video-only]: 0 or 1 track
    of each kind, of the requested kinds only."""
    stream = gum(constraints)
    assert len(stream.getAudioTracks()) == audio
    assert len(stream.getVideoTracks()) == video
    assert len(stream.getTracks()) == audio + video and stream.active


@pytest.mark.parametrize(
    ("kind", "constraints"),
    [
        ("audio", VIDEO_ONLY_VALID),
        ("audio", VIDEO_ONLY_INVALID),
        ("video", AUDIO_ONLY_VALID),
        ("video", AUDIO_ONLY_INVALID),
    ],
    ids=["audio-video_valid", "audio-video_invalid", "video-audio_valid", "video-audio_invalid"],
)
def test_other_kinds_constraints_are_ignored(
    gum: Gum, kind: str, constraints: dict[str, Any]
) -> None:
    """#88 [W: GUM-non-applicable-constraint, 4 tests; `volume` left out, D2]."""
    assert only_track(gum({kind: constraints})).kind == kind


# Required / optional semantics


def test_impossible_width_names_width(shared_daemon: Daemon) -> None:
    """#89 [W: GUM-impossible-constraint; MediaStream-GUM], #100/D1: the real name,
    also for a session that never captured."""
    with MediaDevices(shared_daemon.run_dir, name="never-captured") as fresh:
        with pytest.raises(OverconstrainedError) as caught:
            fresh.getUserMedia({"video": {"width": {"min": HUGE}}})
    assert caught.value.constraint == "width"


def test_empty_exact_facing_mode_names_facing_mode(gum: Gum) -> None:
    """#90 [W: GUM-invalid-facing-mode; MediaStream-GUM]: a camera that does not
    know its facing satisfies no exact facingMode (section 2.6)."""
    assert overconstrained(gum, {"video": {"facingMode": {"exact": ""}}}).constraint == "facingMode"


def test_invalid_exact_resize_mode_names_resize_mode(gum: Gum) -> None:
    """#91 [W: MediaDevices-getUserMedia :: "getUserMedia() fails with exact invalid
    resizeMode."]."""
    error = overconstrained(gum, {"video": {"resizeMode": {"exact": "INVALID"}}})
    assert error.constraint == "resizeMode"


@pytest.mark.parametrize("mode", ["none", "crop-and-scale"])
def test_exact_resize_mode_is_the_setting(gum: Gum, mode: str) -> None:
    """#91 [W: MediaDevices-getUserMedia :: "getUserMedia() supports setting
    none/crop-and-scale as resizeMode."]."""
    track = only_track(gum({"video": {"resizeMode": {"exact": mode}}}))
    assert track.getSettings()["resizeMode"] == mode


def test_exact_group_id_selects_within_the_group(
    shared_devices: MediaDevices, gum: Gum
) -> None:
    """#92 [W: MediaDevices-getUserMedia :: "groupId is correctly supported by
    getUserMedia() for video/audio devices"]: for every device's groupId and each
    kind, a device of that kind in the group, or OverconstrainedError "groupId"
    exactly when the kind has none in the group."""
    devices = shared_devices.enumerateDevices()
    for device in devices:
        for kind in ("audio", "video"):
            members = [
                d.deviceId for d in devices
                if d.kind == kind + "input" and d.groupId == device.groupId
            ]
            constraints = {kind: {"groupId": {"exact": device.groupId}}}
            if not members:
                assert overconstrained(gum, constraints).constraint == "groupId"
                continue
            assert only_track(gum(constraints)).getSettings()["deviceId"] in members


def test_contradictory_advanced_set_is_skipped(gum: Gum) -> None:
    """#93 [W: GUM-optional-constraint; MediaStream-GUM]."""
    stream = gum({"video": {"advanced": [{"width": {"min": 1024, "max": 800}}]}})
    assert len(stream.getVideoTracks()) == 1


def test_trivial_required_constraint_succeeds(gum: Gum) -> None:
    """#94 [W: GUM-trivial-constraint; MediaStream-GUM]."""
    assert len(gum({"video": {"width": {"min": 0}}}).getVideoTracks()) == 1


def test_ideal_within_a_required_range_lands_on_the_ideal(gum: Gum) -> None:
    """#95 [W: GUM-required-constraint-with-ideal-value]: width 320 in the settings
    and in the frames (the Python videoWidth)."""
    track = only_track(gum({"video": {"width": {"ideal": 320, "min": 160}}}))
    assert track.getSettings()["width"] == 320
    frame = track.read(timeout=5)
    assert isinstance(frame, VideoFrame) and frame.data.shape[1] == 320


@pytest.mark.parametrize(
    "constraints",
    [
        {"groupId": "INVALID"},
        {"deviceId": "no-such-device"},
        {"resizeMode": "INVALID"},
        {"facingMode": "environment"},
        {"frameRate": 1000},
    ],
    ids=repr,
)
def test_bare_values_are_ideal(gum: Gum, constraints: dict[str, Any]) -> None:
    """#96 [S: SelectSettings step 3]: bare values in the basic set never fail
    (test_devices.py covers a bare width)."""
    assert len(gum({"video": constraints}).getVideoTracks()) == 1


def test_empty_device_id_is_as_if_not_given(shared_devices: MediaDevices, gum: Gum) -> None:
    """#97 [S: deviceId row]: deviceId "" gives the camera gUM({video: true}) gives."""
    default = only_track(gum({"video": True})).getSettings()["deviceId"]
    assert only_track(gum({"video": {"deviceId": ""}})).getSettings()["deviceId"] == default


# Failures and ordering


def test_no_device_of_the_kind_is_not_found(own_devices: MediaDevices) -> None:
    """#98 [S: gUM "If candidateSet is the empty set ... NotFound Failure"; spec-
    derived, no WPT], ordered before the other failures.

    1. Unplug every camera (issue 3's remove_fake_device).
    2. Video: NotFoundError, also with an impossible or a forbidden required
       constraint, and also when audio is requested alongside.
    3. Audio alone still works.
    """
    for device in own_devices.enumerateDevices():
        if device.kind == "videoinput":
            own_devices.remove_fake_device(device.deviceId)
    assert not [d for d in own_devices.enumerateDevices() if d.kind == "videoinput"]
    for constraints in (
        {"video": True},
        {"video": {"width": {"min": HUGE}}},
        {"video": {"backgroundBlur": {"exact": True}}},
        {"audio": True, "video": True},
    ):
        with pytest.raises(NotFoundError):
            own_devices.getUserMedia(constraints)
    track = only_track(own_devices.getUserMedia({"audio": True}))
    assert track.kind == "audio"


def test_jointly_unsatisfiable_constraints_name_no_constraint(own_devices: MediaDevices) -> None:
    """#99 [S: failedConstraint is one "whose fitness distance was infinity for all
    settings dictionaries examined", else ""]: width 1920 and aspect ratio 1 each
    fit the camera, but together need height 1920 > 1080; neither alone is
    infinite everywhere, so the name is "". (A daemon of its own, so that no
    source another test left open limits the width.)"""
    constraints = {"video": {"width": {"exact": 1920}, "aspectRatio": {"exact": 1}}}
    with pytest.raises(OverconstrainedError) as caught:
        own_devices.getUserMedia(constraints)
    assert caught.value.constraint == ""


@pytest.mark.parametrize(
    "constraints",
    [
        {"aspectRatio": {"exact": 1.0}},
        {"width": {"exact": 1000}, "height": {"exact": 500}},
        {"aspectRatio": {"min": 2.0}, "height": {"exact": 200}},
        {"height": {"max": 100}},
        {"width": {"max": 300}, "aspectRatio": {"exact": 1.5}},
        {"frameRate": {"max": 12}},
    ],
    ids=repr,
)
def test_settings_satisfy_every_required_constraint(
    own_devices: MediaDevices, constraints: dict[str, Any]
) -> None:
    """#105 [S: gUM runs ApplyConstraints on the new track] with section 2.3: the
    chosen settings satisfy every required constraint, width/height/aspectRatio
    agree with one another, and the frames have that size. (A daemon of its own,
    so that no source another test left open shapes the choice.)"""
    track = only_track(own_devices.getUserMedia({"video": constraints}))
    settings = track.getSettings()
    broken = {
        k: (settings.get(k), c) for k, c in constraints.items() if not satisfies(settings.get(k), c)
    }
    assert not broken, f"settings {settings} break {broken}"
    width, height = settings["width"], settings["height"]
    assert settings["aspectRatio"] == round(width / height, 10)
    frame = track.read(timeout=5)
    assert isinstance(frame, VideoFrame) and frame.data.shape[:2] == (height, width)


def test_default_camera_is_chosen_on_a_tie(own_devices: MediaDevices) -> None:
    """#106 [S: "encouraged to default to the system default device"]: with two
    cameras and no constraint, the default (listed first, #79) is chosen."""
    own_devices.add_fake_device("videoinput", "Second camera")
    cameras = [d for d in own_devices.enumerateDevices() if d.kind == "videoinput"]
    assert len(cameras) == 2
    track = only_track(own_devices.getUserMedia({"video": True}))
    assert track.getSettings()["deviceId"] == cameras[0].deviceId


@pytest.mark.parametrize("name", ["deviceId", "groupId"])
def test_ideal_id_chooses_its_device(own_devices: MediaDevices, name: str) -> None:
    """#106 [S: the fitness distance guides the choice]: a bare (ideal) deviceId or
    groupId of the second camera picks it over the default."""
    device_id = own_devices.add_fake_device("videoinput", "Preferred camera")
    (device,) = [d for d in own_devices.enumerateDevices() if d.deviceId == device_id]
    value = device.deviceId if name == "deviceId" else device.groupId
    track = only_track(own_devices.getUserMedia({"video": {name: value}}))
    assert track.getSettings()["deviceId"] == device_id
    assert track.label == "Preferred camera"


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_stored_device_id_reopens_the_device(gum: Gum, kind: str) -> None:
    """#107 [S: examples; W: MediaStreamTrack-getSettings]: store deviceId, stop,
    and an exact deviceId opens the same device again."""
    first = only_track(gum({kind: True}))
    stored, label = first.getSettings()["deviceId"], first.label
    first.stop()
    again = only_track(gum({kind: {"deviceId": {"exact": stored}}}))
    assert again.getSettings()["deviceId"] == stored and again.label == label
