"""Fake devices: the built-in pair and the ones plugged in while the daemon runs.

Their frames and samples come from `mediabroker.capture.fake`, in a capture
process; this module only describes them, so the daemon never imports a
capture driver.
"""

from __future__ import annotations

from mediabroker.capture.backend import BackendSpec
from mediabroker.devices.device import Device, stable_id, video_capabilities
from mediastream.errors import ConstraintTypeError, InvalidStateError, NotFoundError

__all__ = [
    "FAKE_CAMERA_MAX",
    "FAKE_DRIVERS",
    "MAX_RUNTIME_FAKES",
    "RuntimeFakes",
    "fake_camera",
    "fake_devices",
    "fake_microphone",
]

FAKE_CAMERA_MAX = (1920, 1080, 30.0)  # width, height, frames per second
FAKE_DRIVERS = frozenset({"fake-camera", "fake-microphone"})
MAX_RUNTIME_FAKES = 32  # keeps the device list and devicechange notices small


def fake_devices(clock_code: bool = False) -> list[Device]:
    """One test-pattern camera and one sine-tone microphone; ``clock_code``:
    the camera paints each frame's capture time (`capture.fake`)."""
    return [
        fake_microphone("0", "Fake microphone (440 Hz tone)"),
        fake_camera("0", "Fake camera (test pattern)", clock_code),
    ]


def fake_camera(key: str, label: str, clock_code: bool = False) -> Device:
    """A test-pattern camera; ``key`` makes its id (stable for the same key).
    ``clock_code``: its frames carry their capture time (`capture.fake`)."""
    max_width, max_height, max_rate = FAKE_CAMERA_MAX
    device_id, group_id = (
        stable_id("fake", "camera", key),
        stable_id("fake", "group", "camera", key),
    )
    capabilities = video_capabilities(device_id, group_id, max_width, max_height, max_rate)
    defaults = {"width": 640, "height": 480, "frameRate": max_rate, "resizeMode": "none"}
    # Without the code the parameters stay empty: the spec is the one it always was.
    backend = BackendSpec("fake-camera", {"clock_code": True} if clock_code else {})
    return Device(device_id, "videoinput", label, group_id, backend, capabilities, defaults)


FAKE_BLOCK_FRAMES = 480  # capture.fake.FakeMicrophone's block


def fake_microphone(key: str, label: str) -> Device:
    """A 440 Hz tone; ``key`` makes its id (stable for the same key)."""
    device_id = stable_id("fake", "microphone", key)
    group_id = stable_id("fake", "group", "microphone", key)
    capabilities = {
        "deviceId": device_id,
        "groupId": group_id,
        "sampleRate": {"min": 8000, "max": 48000},
        "sampleSize": {"min": 32, "max": 32},
        "channelCount": {"min": 1, "max": 2},
        # One 480-frame block (capture.fake) at 48 kHz down to 8 kHz.
        "latency": {"min": FAKE_BLOCK_FRAMES / 48000, "max": FAKE_BLOCK_FRAMES / 8000},
        "echoCancellation": [False],
        "autoGainControl": [False],
        "noiseSuppression": [False],
    }
    defaults = {"sampleRate": 48000, "channelCount": 1}
    return Device(
        device_id,
        "audioinput",
        label,
        group_id,
        BackendSpec("fake-microphone"),
        capabilities,
        defaults,
    )


class RuntimeFakes:
    """Fake devices plugged in and out while the daemon runs (for hot-plug
    tests and demos): ``mediabroker fake-device add|remove``. The built-in
    fakes can be unplugged too, so a test can leave the daemon without a
    camera. ``clock_code``: cameras added paint their capture time."""

    def __init__(self, clock_code: bool = False) -> None:
        self.clock_code = clock_code
        self._added: list[Device] = []
        self._unplugged: set[str] = set()
        self._count = 0

    def apply(self, discovered: list[Device]) -> list[Device]:
        """The discovered devices less the unplugged fakes, plus the added ones."""
        return [d for d in discovered if d.device_id not in self._unplugged] + self._added

    def add(self, kind: str, label: str) -> Device:
        """Plug in a new fake device; raises `ConstraintTypeError` (the spec's
        TypeError, answered as such) for a bad kind."""
        if kind not in ("videoinput", "audioinput"):
            raise ConstraintTypeError(f"kind must be 'videoinput' or 'audioinput', not {kind!r}")
        if len(self._added) >= MAX_RUNTIME_FAKES:
            raise InvalidStateError(
                f"{MAX_RUNTIME_FAKES} fake devices are plugged in already; remove some first"
            )
        self._count += 1
        key = f"runtime-{self._count}-{label}"
        if kind == "videoinput":
            device = fake_camera(key, label, self.clock_code)
        else:
            device = fake_microphone(key, label)
        self._added.append(device)
        return device

    def remove(self, device: Device) -> None:
        """Unplug a fake device; raises `NotFoundError` for a real one."""
        if device.backend.driver not in FAKE_DRIVERS:
            raise NotFoundError(f"{device.label!r} is not a fake device; unplug it for real")
        self._added = [d for d in self._added if d.device_id != device.device_id]
        self._unplugged.add(device.device_id)

    def __repr__(self) -> str:
        return f"<RuntimeFakes added={len(self._added)} unplugged={len(self._unplugged)}>"
