"""The devices the daemon can open, as the spec's MediaDeviceInfo sees them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from mediastream.wire import DeviceInfoDict

from .backends import BackendSpec
from .config import BrokerConfig
from .fake import FAKE_CAMERA_MAX

__all__ = [
    "Device",
    "RuntimeFakes",
    "discover_devices",
    "fake_camera",
    "fake_devices",
    "fake_microphone",
    "stable_id",
]

DeviceKind = Literal["videoinput", "audioinput"]
VideoMode = tuple[int, int, float]  # width, height, frames per second


def stable_id(*parts: str) -> str:
    """An opaque id that is the same for the same device across restarts."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    kind: DeviceKind
    label: str
    group_id: str
    backend: BackendSpec
    capabilities: dict[str, Any]
    """The spec's shapes: numeric ranges {min, max}, choices as lists."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Settings used where no constraint says otherwise."""
    native_modes: tuple[VideoMode, ...] = ()
    """The modes a camera's hardware runs in; empty: any size and rate within
    the capabilities (fake cameras)."""

    def native_mode_for(self, width: int, height: int, frame_rate: float) -> VideoMode:
        """The mode to run the camera in for a request: the request itself when
        any mode goes, else the smallest native mode that covers it (the rest
        is crop-and-scale), else the largest."""
        if not self.native_modes:
            return (width, height, frame_rate)
        covering = [
            m for m in self.native_modes if m[0] >= width and m[1] >= height and m[2] >= frame_rate
        ]
        if covering:
            return min(covering, key=lambda m: (m[0] * m[1], m[2]))
        return max(self.native_modes, key=lambda m: (m[0] * m[1], m[2]))

    def capabilities_in_use(self, running: dict[str, Any]) -> dict[str, Any]:
        """What a new track can get while the device already runs with the
        ``running`` settings: a camera scales and decimates down from its mode
        (never up); a microphone offers only the mode it is in."""
        caps = dict(self.capabilities)
        if self.kind == "videoinput":
            caps["width"] = {"min": caps["width"]["min"], "max": running["width"]}
            caps["height"] = {"min": caps["height"]["min"], "max": running["height"]}
            rate = caps["frameRate"]
            caps["frameRate"] = {
                "min": min(rate["min"], running["frameRate"]),
                "max": running["frameRate"],
            }
            return caps
        for name in ("sampleRate", "channelCount"):
            caps[name] = {"min": running[name], "max": running[name]}
        return caps

    @property
    def media_kind(self) -> Literal["video", "audio"]:
        return "video" if self.kind == "videoinput" else "audio"

    def to_wire(self) -> DeviceInfoDict:
        return {
            "deviceId": self.device_id,
            "kind": self.kind,
            "label": self.label,
            "groupId": self.group_id,
            "capabilities": self.capabilities,
        }


def fake_devices() -> list[Device]:
    """One test-pattern camera and one sine-tone microphone."""
    return [
        fake_microphone("0", "Fake microphone (440 Hz tone)"),
        fake_camera("0", "Fake camera (test pattern)"),
    ]


def fake_camera(key: str, label: str) -> Device:
    """A test-pattern camera; ``key`` makes its id (stable for the same key)."""
    max_width, max_height, max_rate = FAKE_CAMERA_MAX
    device_id, group_id = (
        stable_id("fake", "camera", key),
        stable_id("fake", "group", "camera", key),
    )
    capabilities = {
        "deviceId": device_id,
        "groupId": group_id,
        "width": {"min": 1, "max": max_width},
        "height": {"min": 1, "max": max_height},
        "aspectRatio": {"min": 1 / max_height, "max": max_width},
        "frameRate": {"min": 1.0, "max": max_rate},
        "facingMode": [],
        "resizeMode": ["none", "crop-and-scale"],
        "pixelFormat": ["bgr24", "rgb24", "gray8"],
    }
    defaults = {"width": 640, "height": 480, "frameRate": max_rate, "resizeMode": "none"}
    return Device(
        device_id, "videoinput", label, group_id, BackendSpec("fake-camera"), capabilities, defaults
    )


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
        "latency": {"min": 0.01, "max": 0.01},
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


def discover_devices(config: BrokerConfig) -> list[Device]:
    """Every device the daemon offers now, microphones first, then cameras
    (the spec's enumeration order). Called at start and on every rescan."""
    found = fake_devices() if config.fake_devices else []
    return sorted(found, key=lambda d: d.kind != "audioinput")


class RuntimeFakes:
    """Fake devices plugged in and out while the daemon runs (for hot-plug
    tests and demos): ``mediabroker fake-device add|remove``."""

    def __init__(self) -> None:
        self._devices: list[Device] = []
        self._added = 0

    def __iter__(self) -> Iterator[Device]:
        return iter(list(self._devices))

    def add(self, kind: str, label: str) -> Device:
        """Plug in a new fake device; raises the builtin `TypeError` for a bad kind."""
        builders = {"videoinput": fake_camera, "audioinput": fake_microphone}
        if kind not in builders:
            raise TypeError(f"kind must be 'videoinput' or 'audioinput', not {kind!r}")
        self._added += 1
        device = builders[kind](f"runtime-{self._added}-{label}", label)
        self._devices.append(device)
        return device

    def remove(self, device_id: str) -> bool:
        """Unplug one; False when no runtime fake device has that id."""
        kept = [d for d in self._devices if d.device_id != device_id]
        removed = len(kept) != len(self._devices)
        self._devices = kept
        return removed
