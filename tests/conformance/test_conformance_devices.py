"""MediaDevices conformance: checklist 1C #74 (OverconstrainedError) and 1D,
#75-#82: enumerateDevices, devicechange, getSupportedConstraints.

Numbers in docstrings are the checklist's (SPEC-CHECKLIST.md); [S: ...] cites
the spec, [W: file] the WPT file in mediacapture-streams/. devicechange has
no WPT test (#81, D8): those tests are spec-derived, and hot-plug them through
issue 3's non-standard ``add_fake_device(kind, label) -> deviceId`` and
``remove_fake_device(deviceId)``, on a daemon of their own.

Already covered elsewhere, not repeated here:
* tests/test_devices.py: #77 (new objects, same order, equal entries), #79
  for the fake devices (microphone, then camera), #80's ids stable across
  daemons, #76's toJSON for the camera.
* tests/test_events.py: #73 (MediaStreamTrackEvent).

Section 4.2 / D1 / D5: the daemon exposes every device, label and id before
any capture (#78 is tested as that deliberate difference from browsers).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from mediastream import (
    Event,
    InputDeviceInfo,
    MediaDeviceInfo,
    MediaDevices,
    MediaStreamError,
    NotReadableError,
    OverconstrainedError,
    VideoFrame,
)
from support import Daemon

EVENT_TIMEOUT_S = 5.0
SPEC_CONSTRAINTS = (
    "width", "height", "aspectRatio", "frameRate", "facingMode", "resizeMode",
    "sampleRate", "sampleSize", "echoCancellation", "autoGainControl",
    "noiseSuppression", "latency", "channelCount", "deviceId", "groupId",
)
KINDS = {"audioinput", "videoinput", "audiooutput"}


class Recorder:
    """Events of one type on one target, to block on with a timeout."""

    def __init__(self, target: Any, type_: str) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        target.addEventListener(type_, self.events.put)

    def next(self, what: str, timeout: float = EVENT_TIMEOUT_S) -> Any:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {what} within {timeout:g} s") from None

    def until(self, wanted: Callable[[Any], bool], what: str) -> Any:
        """The first event that satisfies ``wanted`` (changes may be merged or split)."""
        while True:
            event = self.next(what)
            if wanted(event):
                return event


def ids(devices: Sequence[MediaDeviceInfo]) -> list[str]:
    return [d.deviceId for d in devices]


def has(device_id: str) -> Callable[[Any], bool]:
    return lambda event: device_id in ids(event.devices)


def lacks(device_id: str) -> Callable[[Any], bool]:
    return lambda event: device_id not in ids(event.devices)


# 1C: OverconstrainedError


def test_overconstrained_error_object() -> None:
    """#74 [S: OverconstrainedError Interface]: name, code 0, constraint, message;
    a DOMException (here the package's MediaStreamError)."""
    error = OverconstrainedError("width", "no camera is 100000000 pixels wide")
    assert error.name == "OverconstrainedError"
    assert error.code == 0
    assert error.constraint == "width"
    assert error.message == "no camera is 100000000 pixels wide"
    assert isinstance(error, MediaStreamError) and isinstance(error, Exception)


def test_overconstrained_error_defaults() -> None:
    """#74 [S: constructor(constraint, optional message = "")]: constraint "" when
    no name is revealed; the message defaults to ""."""
    error = OverconstrainedError("")
    assert error.constraint == "" and error.message == "" and error.code == 0


def test_overconstrained_error_from_get_user_media(shared_devices: MediaDevices) -> None:
    """#74 with #89: the raised error has the same members; its message names the
    constraint (house style: messages name the value)."""
    with pytest.raises(OverconstrainedError) as caught:
        shared_devices.getUserMedia({"video": {"width": {"min": 100000000}}})
    error = caught.value
    assert (error.name, error.code, error.constraint) == ("OverconstrainedError", 0, "width")
    assert isinstance(error.message, str) and "width" in error.message


# 1D: enumerateDevices


def test_device_kinds_and_classes(shared_devices: MediaDevices) -> None:
    """#75 [W: MediaDevices-enumerateDevices :: "InputDeviceInfo is supported"]:
    every kind is one of three; inputs are InputDeviceInfo, outputs are not."""
    devices = shared_devices.enumerateDevices()
    assert devices and isinstance(devices, list)
    for device in devices:
        assert device.kind in KINDS, device
        assert isinstance(device, MediaDeviceInfo)
        is_input = device.kind in ("audioinput", "videoinput")
        assert isinstance(device, InputDeviceInfo) is is_input, device


def test_device_info_members_are_read_only(shared_devices: MediaDevices) -> None:
    """#76 [S: Device Info]: deviceId, kind, label and groupId are read-only;
    toJSON() gives exactly those four."""
    for device in shared_devices.enumerateDevices():
        for name in ("deviceId", "kind", "label", "groupId"):
            with pytest.raises(AttributeError):
                setattr(device, name, "changed")
        assert device.toJSON() == {
            "deviceId": device.deviceId,
            "kind": device.kind,
            "label": device.label,
            "groupId": device.groupId,
        }


def test_unlabelled_device_has_an_empty_label(own_devices: MediaDevices) -> None:
    """#76 [S: label attribute]: a device without a label lists label ""."""
    device_id = own_devices.add_fake_device("videoinput", "")
    (device,) = [d for d in own_devices.enumerateDevices() if d.deviceId == device_id]
    assert device.label == "" and device.kind == "videoinput"


def test_everything_is_exposed_before_any_capture(shared_daemon: Daemon) -> None:
    """#78 per section 4.2 and D5: unlike a browser, the daemon lists every device
    with its id, label and group before the session captured anything, and the
    same after a capture."""
    with MediaDevices(shared_daemon.run_dir, name="never-captured") as fresh:
        before = fresh.enumerateDevices()
        assert {"audioinput", "videoinput"} <= {d.kind for d in before}
        assert all(d.deviceId and d.label and d.groupId for d in before), before
        fresh.getUserMedia({"audio": True}).getTracks()[0].stop()
        after = fresh.enumerateDevices()
        assert all(d.deviceId for d in after) and ids(after) == ids(before)


def test_several_devices_of_a_kind_are_listed_before_capture(own_devices: MediaDevices) -> None:
    """#78 per section 4.2: no "one device per kind" limit before capture."""
    second = own_devices.add_fake_device("videoinput", "Second camera")
    cameras = [d for d in own_devices.enumerateDevices() if d.kind == "videoinput"]
    assert len(cameras) == 2 and second in ids(cameras)


def test_order_with_hot_plugged_devices(own_devices: MediaDevices) -> None:
    """#79 [S: creating a list of device info objects]: microphones first, then
    cameras, then the others; the default (the one listed first before) stays
    first in its group."""
    before = own_devices.enumerateDevices()
    default_mic = next(d for d in before if d.kind == "audioinput")
    default_camera = next(d for d in before if d.kind == "videoinput")
    new_camera = own_devices.add_fake_device("videoinput", "USB camera")
    new_mic = own_devices.add_fake_device("audioinput", "USB microphone")
    devices = own_devices.enumerateDevices()
    rank = {"audioinput": 0, "videoinput": 1, "audiooutput": 2}
    kinds = [d.kind for d in devices]
    assert kinds == sorted(kinds, key=rank.__getitem__), kinds
    mics = [d.deviceId for d in devices if d.kind == "audioinput"]
    cameras = [d.deviceId for d in devices if d.kind == "videoinput"]
    assert mics[0] == default_mic.deviceId and new_mic in mics
    assert cameras[0] == default_camera.deviceId and new_camera in cameras


def test_device_identity(own_devices: MediaDevices) -> None:
    """#80 [S: deviceId, groupId attributes]: (deviceId, kind) is unique; a new
    device gets a new id and, being another physical device, its own groupId."""
    camera = next(d for d in own_devices.enumerateDevices() if d.kind == "videoinput")
    new_id = own_devices.add_fake_device("videoinput", "Another camera")
    devices = own_devices.enumerateDevices()
    pairs = [(d.deviceId, d.kind) for d in devices]
    assert len(pairs) == len(set(pairs))
    (added,) = [d for d in devices if d.deviceId == new_id]
    assert new_id != camera.deviceId and added.label == "Another camera"
    assert added.groupId and added.groupId != camera.groupId


# 1D: devicechange


def test_device_change_event_constructor() -> None:
    """#81 [S: DeviceChangeEvent]: init defaults to {}, so devices and
    userInsertedDevices are empty; both are frozen."""
    from mediastream import DeviceChangeEvent

    event = DeviceChangeEvent("devicechange")
    assert event.type == "devicechange" and isinstance(event, Event)
    assert list(event.devices) == [] and list(event.userInsertedDevices) == []
    info = MediaDeviceInfo("id", "audiooutput", "Speakers", "group")
    event = DeviceChangeEvent("devicechange", {"devices": [info]})
    assert list(event.devices) == [info]
    with pytest.raises((AttributeError, TypeError)):
        event.devices.append(info)  # type: ignore[attr-defined]


def test_devicechange_on_plug_and_unplug(own_devices: MediaDevices) -> None:
    """#81 [S: device change notification steps; spec-derived, no WPT].

    1. Plug a camera: devicechange fires, a DeviceChangeEvent whose devices is
       the new list (as enumerateDevices() now gives it) and whose
       userInsertedDevices, if any, are in devices. The handler sees it too.
    2. Unplug it: devicechange fires again without it; nothing was inserted.
    """
    from mediastream import DeviceChangeEvent

    changes = Recorder(own_devices, "devicechange")
    handled: queue.Queue[Any] = queue.Queue()
    own_devices.ondevicechange = handled.put
    device_id = own_devices.add_fake_device("videoinput", "Plugged camera")
    plugged = changes.until(has(device_id), "devicechange listing the new camera")
    assert isinstance(plugged, DeviceChangeEvent) and plugged.target is own_devices
    assert list(plugged.devices) == own_devices.enumerateDevices()
    assert set(ids(plugged.userInsertedDevices)) <= set(ids(plugged.devices))
    assert handled.get(timeout=EVENT_TIMEOUT_S).type == "devicechange"

    own_devices.remove_fake_device(device_id)
    unplugged = changes.until(lacks(device_id), "devicechange without the camera")
    assert list(unplugged.devices) == own_devices.enumerateDevices()
    assert list(unplugged.userInsertedDevices) == []


def test_devicechange_fires_only_on_a_change(own_devices: MediaDevices) -> None:
    """#81 [S: "no event if the exposed list is identical"]: enumerating and
    capturing change nothing, so the first event seen is the plug that follows."""
    changes = Recorder(own_devices, "devicechange")
    own_devices.enumerateDevices()
    for track in own_devices.getUserMedia({"video": True, "audio": True}).getTracks():
        track.stop()
    device_id = own_devices.add_fake_device("audioinput", "Headset microphone")
    first = changes.next("devicechange after plugging a microphone")
    assert device_id in ids(first.devices)


def test_devicechange_reaches_every_session(daemon: Daemon, own_devices: MediaDevices) -> None:
    """#81 with issue 3 ("devicechange fires everywhere"): another client's
    MediaDevices sees the change too, and its track on the device ends."""
    with MediaDevices(daemon.run_dir, name="other") as other:
        changes = Recorder(other, "devicechange")
        device_id = own_devices.add_fake_device("videoinput", "Shared camera")
        changes.until(has(device_id), "devicechange in the other session")
        track = other.getUserMedia({"video": {"deviceId": {"exact": device_id}}}).getTracks()[0]
        ended = Recorder(track, "ended")
        own_devices.remove_fake_device(device_id)
        changes.until(lacks(device_id), "devicechange for the unplug in the other session")
        ended.next("ended on the other session's track")
        assert track.readyState == "ended"


def test_unplugging_ends_the_device_tracks(own_devices: MediaDevices) -> None:
    """#81 with #23, #39 and #42 (the Python mapping of "device physically
    removed"), issue 3: unplugging ends the device's live tracks.

    1. Open a plugged camera; clone its track; open the microphone too.
    2. Unplug the camera: `ended` fires on the track and on its clone, and
       `inactive` on the stream; readyState is "ended" and active False.
    3. Reading is NotReadableError (the device broke, not "you stopped it").
    4. The microphone's track and stream are untouched; the camera is no
       longer listed nor selectable.
    5. The stream's `inactive` came after its track's `ended`.
    """
    device_id = own_devices.add_fake_device("videoinput", "Unplugged camera")
    stream = own_devices.getUserMedia({"video": {"deviceId": {"exact": device_id}}})
    track = stream.getVideoTracks()[0]
    assert track.label == "Unplugged camera"
    clone = track.clone()
    microphone = own_devices.getUserMedia({"audio": True})
    seen: queue.Queue[tuple[str, str]] = queue.Queue()
    track.addEventListener("ended", lambda ev: seen.put(("track", ev.type)))
    clone.addEventListener("ended", lambda ev: seen.put(("clone", ev.type)))
    stream.addEventListener("inactive", lambda ev: seen.put(("stream", ev.type)))
    assert isinstance(track.read(timeout=5), VideoFrame)

    own_devices.remove_fake_device(device_id)
    order = []
    for _ in range(3):
        try:
            order.append(seen.get(timeout=EVENT_TIMEOUT_S))
        except queue.Empty:
            raise AssertionError(f"after unplugging, saw only {order}") from None
    assert set(order) == {("track", "ended"), ("clone", "ended"), ("stream", "inactive")}
    assert track.readyState == clone.readyState == "ended" and stream.active is False
    with pytest.raises(NotReadableError):
        track.read(timeout=1)
    assert seen.empty(), "ended or inactive fired twice"

    assert microphone.active and microphone.getTracks()[0].readyState == "live"
    assert device_id not in ids(own_devices.enumerateDevices())
    with pytest.raises(OverconstrainedError) as caught:
        own_devices.getUserMedia({"video": {"deviceId": {"exact": device_id}}})
    assert caught.value.constraint == "deviceId"
    # The stream turns inactive because its track ended: cause before effect.
    ended_at, inactive_at = order.index(("track", "ended")), order.index(("stream", "inactive"))
    assert ended_at < inactive_at, f"the stream's inactive came before its track's ended: {order}"


def test_plugged_device_delivers_frames(own_devices: MediaDevices) -> None:
    """#81 with issue 3: a device plugged at run time opens and delivers like
    the built-in one, under its own label and id."""
    device_id = own_devices.add_fake_device("videoinput", "Late camera")
    constraints = {"deviceId": {"exact": device_id}, "width": {"exact": 160}}
    track = own_devices.getUserMedia({"video": constraints}).getVideoTracks()[0]
    assert track.label == "Late camera"
    assert track.getSettings()["deviceId"] == device_id
    frame = track.read(timeout=5)
    assert isinstance(frame, VideoFrame) and frame.data.shape[1] == 160


# 1D: getSupportedConstraints


@pytest.mark.parametrize("name", SPEC_CONSTRAINTS)
def test_supported_constraint(shared_devices: MediaDevices, name: str) -> None:
    """#82 [W: MediaDevices-getSupportedConstraints :: "<name> is supported"]
    (`volume` left out, D2; backgroundBlur is not claimed)."""
    assert shared_devices.getSupportedConstraints().get(name) is True


def test_supported_constraints_dictionary(shared_devices: MediaDevices) -> None:
    """#82 [S: getSupportedConstraints]: a dict with True for each supported name,
    unsupported names absent (never False), the same on every call."""
    supported = shared_devices.getSupportedConstraints()
    assert isinstance(supported, dict)
    assert all(value is True for value in supported.values()), supported
    assert "volume" not in supported
    again = shared_devices.getSupportedConstraints()
    assert again == supported and again is not supported
