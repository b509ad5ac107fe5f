"""MediaDevices: enumeration, getUserMedia's errors, close."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mediastream import (
    ConstraintTypeError,
    InputDeviceInfo,
    InvalidStateError,
    MediaDevices,
    MediaStream,
    MediaStreamTrack,
    NotReadableError,
    OverconstrainedError,
)
from mediastream.wire import SUPPORTED_CONSTRAINTS
from support import Daemon


def test_enumerate_devices_lists_microphones_then_cameras(shared_devices: MediaDevices) -> None:
    """Checklist #79: microphones first; new objects each call; stable ids."""
    first, second = shared_devices.enumerateDevices(), shared_devices.enumerateDevices()
    assert [d.kind for d in first] == ["audioinput", "videoinput"]
    assert first == second and all(a is not b for a, b in zip(first, second, strict=True))
    camera = first[1]
    assert isinstance(camera, InputDeviceInfo)
    assert camera.toJSON() == {
        "deviceId": camera.deviceId,
        "kind": "videoinput",
        "label": camera.label,
        "groupId": camera.groupId,
    }
    assert camera.getCapabilities()["width"] == {"min": 1, "max": 1920}


def test_device_ids_are_stable_across_daemons(daemon: Daemon, shared_devices: MediaDevices) -> None:
    with MediaDevices(daemon.run_dir) as other:
        assert other.enumerateDevices() == shared_devices.enumerateDevices()


def test_supported_constraints_are_the_contracts(shared_devices: MediaDevices) -> None:
    """The list the daemon's constraint code reads, pixelFormat included."""
    supported = shared_devices.getSupportedConstraints()
    assert supported == dict.fromkeys(SUPPORTED_CONSTRAINTS, True)
    assert supported["pixelFormat"] is True


@pytest.mark.parametrize("constraints", [None, {}, {"video": False, "audio": False}, {"foo": True}])
def test_get_user_media_with_nothing_requested_is_a_type_error(
    shared_devices: MediaDevices, constraints: dict[str, object] | None
) -> None:
    """None is refused by the client, the others by the daemon: the same class."""
    with pytest.raises(ConstraintTypeError) as caught:
        shared_devices.getUserMedia(constraints)
    assert isinstance(caught.value, TypeError) and caught.value.name == "TypeError"


@pytest.mark.parametrize(
    "constraints",
    [
        "video",  # refused by the client
        {"video": "yes"},
        {"video": {"width": {"between": 3}}},
        {"video": {"advanced": {"width": 3}}},
        {"audio": {"sampleRate": [44100]}},
        {"video": {"backgroundBlur": {"exact": True}}},
    ],
    ids=repr,
)
def test_get_user_media_rejects_bad_constraint_types(
    shared_devices: MediaDevices, constraints: Any
) -> None:
    with pytest.raises(ConstraintTypeError):
        shared_devices.getUserMedia(constraints)


@pytest.mark.parametrize("constraints", ["wide", {"width": {"exact": [640]}}], ids=repr)
def test_apply_constraints_rejects_bad_constraint_types(
    make_track: Callable[[str], MediaStreamTrack], constraints: Any
) -> None:
    with pytest.raises(ConstraintTypeError):
        make_track("video").applyConstraints(constraints)


@pytest.mark.parametrize(
    ("constraints", "name"),
    [
        ({"video": {"width": {"exact": 4000}}}, "width"),
        ({"video": {"height": {"min": 2000}}}, "height"),
        ({"video": {"frameRate": {"min": 60}}}, "frameRate"),
        ({"video": {"deviceId": {"exact": "no-such-device"}}}, "deviceId"),
        ({"audio": {"channelCount": {"exact": 6}}}, "channelCount"),
    ],
)
def test_impossible_required_constraint_names_itself(
    shared_devices: MediaDevices, constraints: dict[str, object], name: str
) -> None:
    with pytest.raises(OverconstrainedError) as caught:
        shared_devices.getUserMedia(constraints)
    assert caught.value.constraint == name


def test_ideal_values_are_approached_not_required(daemon: Daemon) -> None:
    """An idle camera opens in the mode closest to the ideal (#96)."""
    with MediaDevices(daemon.run_dir) as devices:
        stream = devices.getUserMedia({"video": {"width": 4000, "height": 100}})
        settings = stream.getVideoTracks()[0].getSettings()
        assert (settings["width"], settings["height"]) == (1920, 100)


def test_device_id_selects_the_device(shared_devices: MediaDevices) -> None:
    mic = next(d for d in shared_devices.enumerateDevices() if d.kind == "audioinput")
    stream = shared_devices.getUserMedia({"audio": {"deviceId": {"exact": mic.deviceId}}})
    try:
        assert stream.getAudioTracks()[0].getSettings()["deviceId"] == mic.deviceId
        assert stream.getVideoTracks() == []
    finally:
        for track in stream.getTracks():
            track.stop()


def test_closed_media_devices_is_invalid_state(daemon: Daemon) -> None:
    """Checklist #104; close() ends every track without an ended event (#41)."""
    devices = MediaDevices(daemon.run_dir)
    track = devices.getUserMedia({"video": True}).getVideoTracks()[0]
    fired: list[str] = []
    track.addEventListener("ended", lambda ev: fired.append(ev.type))
    devices.close()
    devices.close()
    assert track.readyState == "ended" and fired == []
    with pytest.raises(InvalidStateError):
        devices.getUserMedia({"video": True})
    with pytest.raises(InvalidStateError):
        devices.enumerateDevices()


def test_no_daemon_is_not_readable_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(NotReadableError, match="mediabroker serve"):
        MediaDevices(tmp_path)


def test_unclosed_media_devices_warns(daemon: Daemon) -> None:
    import gc

    devices = MediaDevices(daemon.run_dir)
    with pytest.warns(ResourceWarning, match="unclosed"):
        del devices
        gc.collect()


def test_our_extensions_answer_bad_arguments_with_the_specs_type_error(
    shared_devices: MediaDevices,
) -> None:
    """The daemon's deliberate TypeErrors (a fake device's kind, a stream's
    name) reach the client as `ConstraintTypeError`, not as internal errors."""
    with pytest.raises(ConstraintTypeError, match="kind must be"):
        shared_devices.add_fake_device("videooutput", "Nope")
    with pytest.raises(ConstraintTypeError, match="stream name"):
        shared_devices.publishStream(MediaStream(), "")
    with pytest.raises(ConstraintTypeError, match="takes a MediaStream"):
        shared_devices.publishStream([], "cams")  # type: ignore[arg-type]
