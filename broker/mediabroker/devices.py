"""The devices the daemon can open, as the spec's MediaDeviceInfo sees them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from mediastream.wire import DeviceInfoDict

from .backends import BackendSpec
from .config import BrokerConfig
from .fake import FAKE_CAMERA_MAX

__all__ = ["Device", "discover_devices", "fake_devices", "stable_id"]

DeviceKind = Literal["videoinput", "audioinput"]


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
    max_width, max_height, max_rate = FAKE_CAMERA_MAX
    camera_id = stable_id("fake", "camera", "0")
    mic_id = stable_id("fake", "microphone", "0")
    camera = Device(
        camera_id,
        "videoinput",
        "Fake camera (test pattern)",
        stable_id("fake", "group", "camera"),
        BackendSpec("fake-camera"),
        {
            "deviceId": camera_id,
            "groupId": stable_id("fake", "group", "camera"),
            "width": {"min": 1, "max": max_width},
            "height": {"min": 1, "max": max_height},
            "aspectRatio": {"min": 1 / max_height, "max": max_width},
            "frameRate": {"min": 1.0, "max": max_rate},
            "resizeMode": ["none", "crop-and-scale"],
            "pixelFormat": ["bgr24", "rgb24", "gray8"],
        },
        {"width": 640, "height": 480, "frameRate": max_rate, "resizeMode": "none"},
    )
    microphone = Device(
        mic_id,
        "audioinput",
        "Fake microphone (440 Hz tone)",
        stable_id("fake", "group", "microphone"),
        BackendSpec("fake-microphone"),
        {
            "deviceId": mic_id,
            "groupId": stable_id("fake", "group", "microphone"),
            "sampleRate": {"min": 8000, "max": 48000},
            "sampleSize": {"min": 32, "max": 32},
            "channelCount": {"min": 1, "max": 2},
            "latency": {"min": 0.01, "max": 0.01},
            "echoCancellation": [False],
            "autoGainControl": [False],
            "noiseSuppression": [False],
        },
        {"sampleRate": 48000, "channelCount": 1},
    )
    return [microphone, camera]


def discover_devices(config: BrokerConfig) -> list[Device]:
    """Every device the daemon offers now, microphones first, then cameras
    (the spec's enumeration order). Called at start and on every rescan."""
    found = fake_devices() if config.fake_devices else []
    return sorted(found, key=lambda d: d.kind != "audioinput")
