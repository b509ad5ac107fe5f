"""A device the daemon can open, as the spec's MediaDeviceInfo sees it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from mediabroker.capture.backend import BackendSpec
from mediastream.wire import DeviceInfoDict

__all__ = [
    "VIDEO_PIXEL_FORMATS",
    "VIDEO_RESIZE_MODES",
    "Device",
    "DeviceKind",
    "VideoMode",
    "single_mode_camera",
    "stable_id",
    "video_capabilities",
]

DeviceKind = Literal["videoinput", "audioinput"]
VideoMode = tuple[int, int, float]  # width, height, frames per second
# bgr24 native; the others derived (the float ones are tensors for models)
VIDEO_PIXEL_FORMATS = ("bgr24", "rgb24", "gray8", "rgbf32", "rgbf32planar")
VIDEO_RESIZE_MODES = ("none", "crop-and-scale", "letterbox")  # letterbox: ours


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
        """What a new track can get from a microphone already running with the
        ``running`` settings: only that mode (there is no derived audio)."""
        caps = dict(self.capabilities)
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


def video_capabilities(
    device_id: str, group_id: str, width: int, height: int, max_rate: float
) -> dict[str, Any]:
    """A camera that runs in native modes up to width x height at max_rate;
    smaller sizes, lower rates and other pixel formats are derived sources."""
    return {
        "deviceId": device_id,
        "groupId": group_id,
        "width": {"min": 1, "max": width},
        "height": {"min": 1, "max": height},
        "aspectRatio": {"min": 1 / height, "max": float(width)},
        "frameRate": {"min": min(1.0, max_rate), "max": max_rate},
        "facingMode": [],
        "resizeMode": list(VIDEO_RESIZE_MODES),
        "pixelFormat": list(VIDEO_PIXEL_FORMATS),
        "backgroundBlur": [False],  # no processing exists to switch on
    }


def single_mode_camera(
    namespace: str, key: str, label: str, backend: BackendSpec, native: VideoMode
) -> Device:
    """A camera that runs in one ``native`` mode (a video file, a network
    stream), its ids made from ``namespace`` and ``key``; other sizes, rates
    and formats are derived sources."""
    width, height, fps = native
    device_id = stable_id(namespace, key)
    group_id = stable_id(namespace, "group", key)
    capabilities = video_capabilities(device_id, group_id, width, height, fps)
    defaults = {"width": width, "height": height, "frameRate": fps, "resizeMode": "none"}
    return Device(
        device_id,
        "videoinput",
        label,
        group_id,
        backend,
        capabilities,
        defaults,
        native_modes=(native,),
    )
