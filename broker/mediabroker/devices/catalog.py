"""The devices the daemon can open, as the spec's MediaDeviceInfo sees them."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mediabroker.capture.backend import BackendSpec
from mediabroker.capture.fake import FAKE_CAMERA_MAX
from mediabroker.config import BrokerConfig
from mediabroker.daemon.access import filter_devices
from mediabroker.devices import portaudio, v4l2
from mediabroker.errors import CaptureError
from mediastream.errors import InvalidStateError, NotFoundError
from mediastream.wire import DeviceInfoDict

__all__ = [
    "Device",
    "RuntimeFakes",
    "discover_devices",
    "fake_camera",
    "fake_devices",
    "fake_microphone",
    "file_devices",
    "portaudio_devices",
    "stable_id",
    "v4l2_devices",
]

log = logging.getLogger(__name__)

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
    if config.hardware_devices:
        found += portaudio_devices() + v4l2_devices()
    found += file_devices(config)
    found = filter_devices(found, config)  # devices.allow / devices.deny
    return sorted(found, key=lambda d: d.kind != "audioinput")


VIDEO_PIXEL_FORMATS = ["bgr24", "rgb24", "gray8"]  # bgr24 native; the others derived
AUDIO_SAMPLE_SIZE = 32  # float32 rings


def _video_capabilities(
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
        "resizeMode": ["none", "crop-and-scale"],
        "pixelFormat": list(VIDEO_PIXEL_FORMATS),
    }


# -- video files ------------------------------------------------------------

FileKey = tuple[str, int, int]  # path, mtime ns, size: a changed file is probed again
_file_probes: dict[FileKey, tuple[int, int, float]] = {}
_file_problems: dict[str, str] = {}  # path -> the problem already logged


def file_devices(config: BrokerConfig) -> list[Device]:
    """The configured video files as cameras at their native size and rate.

    Each file is probed with OpenCV once (again only when it changes); one
    that is missing or undecodable is left out and logged once, and comes
    back when it is readable again.
    """
    devices = []
    for source in config.file_sources:
        path = source.path.absolute()
        native = _probe_file(path)
        if native is None:
            continue
        width, height, fps = native
        device_id = stable_id("file", str(path))
        group_id = stable_id("file", "group", str(path))
        capabilities = _video_capabilities(device_id, group_id, width, height, fps)
        defaults = {"width": width, "height": height, "frameRate": fps, "resizeMode": "none"}
        backend = BackendSpec("file", {"path": str(path), "loop": source.loop})
        label = source.label or f"{path.name} (video file)"
        devices.append(
            Device(
                device_id,
                "videoinput",
                label,
                group_id,
                backend,
                capabilities,
                defaults,
                native_modes=((width, height, fps),),
            )
        )
    return devices


def _probe_file(path: Path) -> tuple[int, int, float] | None:
    from mediabroker.capture.opencv import probe_video_file

    try:
        stat = os.stat(path)
        key: FileKey = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _file_probes:
            info = probe_video_file(path)
            _file_probes[key] = (info.width, info.height, info.fps)
    except (OSError, CaptureError) as exc:
        problem = str(exc)
        if _file_problems.get(str(path)) != problem:
            log.warning("video file %s is not offered: %s", path, problem)
            _file_problems[str(path)] = problem
        return None
    if _file_problems.pop(str(path), None) is not None:
        log.info("video file %s is readable again", path)
    return _file_probes[key]


# -- V4L2 cameras -----------------------------------------------------------


def v4l2_devices(
    sysfs_root: Path = v4l2.SYSFS_ROOT,
    dev_root: Path = v4l2.DEV_ROOT,
    cache: v4l2.CapabilityCache = v4l2.CAPABILITIES,
) -> list[Device]:
    """The machine's V4L2 capture nodes as cameras, in node order. Ids come from
    the hardware (USB serial, else the port), never the node number; modes
    are probed once per camera (``cache``)."""
    devices = []
    for node in v4l2.list_capture_nodes(sysfs_root, dev_root):
        device_id = stable_id("v4l2", *node.identity)
        modes = cache.modes(device_id, node.node)
        if not modes:
            continue
        group_id = stable_id("v4l2", "group", *node.group)
        capabilities, defaults = v4l2.capabilities_of(modes)
        biggest = capabilities["width"]["max"], capabilities["height"]["max"]
        capabilities.update(
            _video_capabilities(device_id, group_id, *biggest, capabilities["frameRate"]["max"])
        )
        params = {
            "node": str(node.node),
            "label": node.label,
            "identity": list(node.identity),
            "modes": [m.to_list() for m in modes],
        }
        devices.append(
            Device(
                device_id,
                "videoinput",
                node.label,
                group_id,
                BackendSpec("v4l2", params),
                capabilities,
                defaults,
                native_modes=v4l2.native_modes(modes),
            )
        )
    return devices


# -- PortAudio microphones --------------------------------------------------


def portaudio_devices() -> list[Device]:
    """PortAudio's input devices (host defaults first), enumerated in a child
    process so the daemon never holds PortAudio or a JACK client itself."""
    devices = []
    for found in portaudio.list_input_devices():
        device_id = stable_id("portaudio", found.hostapi, found.name)
        group_id = stable_id("portaudio", "group", found.hostapi, found.name)
        capabilities = {
            "deviceId": device_id,
            "groupId": group_id,
            "sampleRate": {"min": min(found.rates), "max": max(found.rates)},
            "sampleSize": {"min": AUDIO_SAMPLE_SIZE, "max": AUDIO_SAMPLE_SIZE},
            "channelCount": {"min": 1, "max": found.channels},
            "latency": {"min": found.low_latency, "max": found.high_latency},
            "echoCancellation": [False],
            "autoGainControl": [False],
            "noiseSuppression": [False],
        }
        rate = found.default_rate if found.default_rate in found.rates else max(found.rates)
        defaults = {"sampleRate": rate, "channelCount": 1, "latency": found.low_latency}
        backend = BackendSpec("portaudio", {"name": found.name, "hostapi": found.hostapi})
        devices.append(
            Device(device_id, "audioinput", found.label, group_id, backend, capabilities, defaults)
        )
    return devices


FAKE_DRIVERS = frozenset({"fake-camera", "fake-microphone"})
MAX_RUNTIME_FAKES = 32  # keeps the device list and devicechange notices small


class RuntimeFakes:
    """Fake devices plugged in and out while the daemon runs (for hot-plug
    tests and demos): ``mediabroker fake-device add|remove``. The built-in
    fakes can be unplugged too, so a test can leave the daemon without a
    camera."""

    def __init__(self) -> None:
        self._added: list[Device] = []
        self._unplugged: set[str] = set()
        self._count = 0

    def apply(self, discovered: list[Device]) -> list[Device]:
        """The discovered devices less the unplugged fakes, plus the added ones."""
        return [d for d in discovered if d.device_id not in self._unplugged] + self._added

    def add(self, kind: str, label: str) -> Device:
        """Plug in a new fake device; raises the builtin `TypeError` for a bad kind."""
        builders = {"videoinput": fake_camera, "audioinput": fake_microphone}
        if kind not in builders:
            raise TypeError(f"kind must be 'videoinput' or 'audioinput', not {kind!r}")
        if len(self._added) >= MAX_RUNTIME_FAKES:
            raise InvalidStateError(
                f"{MAX_RUNTIME_FAKES} fake devices are plugged in already; remove some first"
            )
        self._count += 1
        device = builders[kind](f"runtime-{self._count}-{label}", label)
        self._added.append(device)
        return device

    def remove(self, device: Device) -> None:
        """Unplug a fake device; raises `NotFoundError` for a real one."""
        if device.backend.driver not in FAKE_DRIVERS:
            raise NotFoundError(f"{device.label!r} is not a fake device; unplug it for real")
        self._added = [d for d in self._added if d.device_id != device.device_id]
        self._unplugged.add(device.device_id)
