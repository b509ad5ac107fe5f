"""V4L2 cameras: finding /dev/video* capture nodes, naming them, probing them once.

Design note. The node number (/dev/video0) is handed out in plug order and
changes across replugs and reboots, so it never makes a device id. A node is
identified by what sysfs says about the hardware behind it: the USB vendor,
product and serial number when the device has a serial, else its sysfs
device path (the port it hangs on), plus the node's ``index`` within that
device (UVC cameras expose a capture node at index 0 and a metadata node at
index 1). Metadata and output nodes are skipped: the kernel's
VIDIOC_QUERYCAP device caps say what a node does; when the node cannot be
asked (no permission, a test's fixture tree), the ``index`` attribute
decides, as udev's rules do. Modes are probed once per device, in a probe
child that asks OpenCV (`mediabroker.capture.v4l2.query_modes`; OpenCV
never loads in the daemon), and cached by device id: probing opens the
device, and a camera does not change its modes between replugs.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mediabroker.capture.backend import BackendSpec
from mediabroker.devices.device import Device, stable_id, video_capabilities
from mediabroker.devices.prober import run_probe
from mediabroker.errors import CaptureError

__all__ = [
    "CapabilityCache",
    "CaptureNode",
    "Mode",
    "capabilities_of",
    "holder_of",
    "in_use_message",
    "list_capture_nodes",
    "native_modes",
    "probe_modes",
    "v4l2_devices",
]

log = logging.getLogger(__name__)

SYSFS_ROOT = Path("/sys")
DEV_ROOT = Path("/dev")
PROC_ROOT = Path("/proc")

# linux/videodev2.h
VIDIOC_QUERYCAP = 0x80685600  # _IOR('V', 0, struct v4l2_capability), 104 bytes
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
V4L2_CAP_META_CAPTURE = 0x00800000
V4L2_CAP_DEVICE_CAPS = 0x80000000
_QUERYCAP_BYTES = 104

V4L2_PROBE_TIMEOUT_S = 30.0  # setting 16 modes in turn takes seconds on a slow USB camera
DEFAULT_SIZE = (640, 480)  # what browsers open a camera at when nothing is asked
_NODE_NUMBER = re.compile(r"video(\d+)")


@dataclass(frozen=True, slots=True)
class QueryCap:
    """What VIDIOC_QUERYCAP says about a node."""

    driver: str
    card: str
    bus_info: str
    device_caps: int

    @property
    def is_capture(self) -> bool:
        capture = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE
        return bool(self.device_caps & capture) and not self.device_caps & V4L2_CAP_META_CAPTURE


@dataclass(frozen=True, slots=True)
class CaptureNode:
    """One video capture node and the hardware behind it."""

    node: Path
    """/dev/videoN: where it is now; changes across replugs."""
    label: str
    index: int
    identity: tuple[str, ...]
    """What the device id is made of: the same for the same camera in the same role."""
    group: tuple[str, ...]
    """The physical device (all its nodes and interfaces share it)."""
    bus_info: str = ""


def list_capture_nodes(
    sysfs_root: Path = SYSFS_ROOT,
    dev_root: Path = DEV_ROOT,
    querycap: Callable[[Path], QueryCap | None] | None = None,
) -> list[CaptureNode]:
    """Every video capture node sysfs lists, in node order, metadata nodes skipped.

    Never raises for a node that vanishes or cannot be read mid-scan (hot-plug):
    that node is left out of this scan.
    """
    ask = querycap or query_node
    class_dir = sysfs_root / "class" / "video4linux"
    try:
        entries = [e for e in class_dir.iterdir() if _NODE_NUMBER.fullmatch(e.name)]
    except OSError:
        return []
    found = []
    for entry in sorted(entries, key=lambda e: int(e.name.removeprefix("video"))):
        try:
            node = _read_node(entry, dev_root / entry.name, sysfs_root, ask)
        except OSError as exc:
            log.debug("skipping %s: %s", entry.name, exc)
            continue
        if node is not None:
            found.append(node)
    return found


def _read_node(
    entry: Path, node: Path, sysfs_root: Path, ask: Callable[[Path], QueryCap | None]
) -> CaptureNode | None:
    index = int(_attribute(entry, "index") or "0")
    caps = ask(node)
    if caps is not None and not caps.is_capture:
        return None
    if caps is None and index != 0:
        return None  # cannot ask the node: only a device's first node is its camera
    label = _attribute(entry, "name") or (caps.card if caps else "") or entry.name
    identity, group = _identity(entry, sysfs_root, index)
    return CaptureNode(node, label, index, identity, group, caps.bus_info if caps else "")


def _attribute(directory: Path, name: str) -> str:
    try:
        return (directory / name).read_text(errors="replace").strip()
    except FileNotFoundError:
        return ""


def _identity(entry: Path, sysfs_root: Path, index: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(identity, group) of a node from the device it belongs to."""
    device = (entry / "device").resolve()
    usb = _usb_device(device)
    if usb is not None:
        serial = _attribute(usb, "serial")
        vendor, product = _attribute(usb, "idVendor"), _attribute(usb, "idProduct")
        interface = device.name.partition(":")[2]
        if serial:
            group = ("usb", vendor, product, serial)
            return (*group, interface, str(index)), group
        return ("path", _relative(device, sysfs_root), str(index)), (
            "path",
            _relative(usb, sysfs_root),
        )
    path = _relative(device, sysfs_root)
    return ("path", path, str(index)), ("path", path)


def _usb_device(device: Path) -> Path | None:
    """The USB device (the directory with idVendor) at or above ``device``."""
    for directory in (device, *device.parents):
        if (directory / "idVendor").is_file():
            return directory
    return None


def _relative(path: Path, sysfs_root: Path) -> str:
    try:
        return str(path.relative_to(sysfs_root.resolve()))
    except ValueError:
        return str(path)


def query_node(node: Path) -> QueryCap | None:
    """VIDIOC_QUERYCAP on ``node``, or None when it cannot be asked (missing,
    no permission, not a V4L2 device). Opening a node does not start streaming."""
    try:
        fd = os.open(node, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buffer = array.array("B", bytes(_QUERYCAP_BYTES))
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, buffer, True)
    except OSError:
        return None
    finally:
        os.close(fd)
    return _parse_querycap(buffer.tobytes())


def _parse_querycap(raw: bytes) -> QueryCap:
    def text(start: int, end: int) -> str:
        return raw[start:end].split(b"\0", 1)[0].decode("utf-8", "replace")

    capabilities = int.from_bytes(raw[84:88], "little")
    device_caps = int.from_bytes(raw[88:92], "little")
    if not capabilities & V4L2_CAP_DEVICE_CAPS:
        device_caps = capabilities  # old drivers: the whole device's caps are all there is
    return QueryCap(text(0, 16), text(16, 48), text(48, 80), device_caps)


# -- who holds a device --------------------------------------------------


def holder_of(node: Path, exclude: tuple[int, ...] = ()) -> tuple[int, str] | None:
    """(pid, process name) of a process that has ``node`` open, or None.

    Looks at every process's open file descriptors (psutil's ``open_files``
    lists regular files only, not device nodes). Processes we may not
    inspect are skipped; ``exclude`` and this process never count.
    """
    target = os.path.realpath(node)
    skip = {os.getpid(), *exclude}
    for process in psutil.process_iter(["pid", "name"]):
        pid = process.info["pid"]
        if pid in skip:
            continue
        if _has_open(pid, target):
            return pid, str(process.info["name"])
    return None


def _has_open(pid: int, target: str) -> bool:
    fd_dir = PROC_ROOT / str(pid) / "fd"
    try:
        with os.scandir(fd_dir) as fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) == target:
                        return True
                except OSError:
                    continue  # closed while we looked
    except OSError:
        return False  # gone, or not ours to inspect
    return False


def in_use_message(label: str, node: Path) -> str | None:
    """ "<label> (<node>) is in use by pid N (name)" when someone else holds it."""
    holder = holder_of(node)
    if holder is None:
        return None
    pid, name = holder
    return f"{label} ({node}) is in use by pid {pid} ({name}); stop that program or ask it to share"


# -- modes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Mode:
    """One pixel format, size and best frame rate the device accepted."""

    width: int
    height: int
    fps: float
    fourcc: str

    def to_list(self) -> list[Any]:
        return [self.fourcc, self.width, self.height, self.fps]

    @classmethod
    def from_list(cls, value: list[Any]) -> Mode:
        fourcc, width, height, fps = value
        return cls(int(width), int(height), float(fps), str(fourcc))


def capabilities_of(modes: list[Mode]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(capabilities, defaults) in the spec's shapes for a device with these modes.

    Any size up to the largest mode is offered: smaller ones are cropped and
    scaled from the nearest mode that covers them.
    """
    widths = [m.width for m in modes]
    heights = [m.height for m in modes]
    max_w, max_h = max(widths), max(heights)
    max_rate = max(m.fps for m in modes)
    capabilities = {
        "width": {"min": 1, "max": max_w},
        "height": {"min": 1, "max": max_h},
        "aspectRatio": {"min": 1 / max_h, "max": float(max_w)},
        "frameRate": {"min": 1.0, "max": max_rate},
        "resizeMode": ["none", "crop-and-scale"],
        "pixelFormat": ["bgr24"],
    }
    sized = [m for m in modes if (m.width, m.height) == DEFAULT_SIZE] or [modes[0]]
    default = max(sized, key=lambda m: m.fps)
    defaults = {
        "width": default.width,
        "height": default.height,
        "frameRate": min(30.0, default.fps) if default.fps > 0 else 30.0,
        "resizeMode": "none",
    }
    return capabilities, defaults


def native_modes(modes: list[Mode]) -> tuple[tuple[int, int, float], ...]:
    """(width, height, best rate) per size, for the daemon's one-mode-per-device
    planning (`Device.native_modes`); the pixel format is chosen in the capture
    process (`mediabroker.capture.v4l2.choose_mode`)."""
    best: dict[tuple[int, int], float] = {}
    for mode in modes:
        size = (mode.width, mode.height)
        best[size] = max(best.get(size, 0.0), mode.fps)
    return tuple(sorted((w, h, fps) for (w, h), fps in best.items()))


def probe_modes(node: Path) -> list[Mode]:
    """The modes ``node`` accepts, asked by a probe child (blocking; see
    `mediabroker.capture.v4l2.query_modes`). Raises `CaptureError`."""
    found = run_probe(["v4l2", str(node)], f"probing {node}", timeout_s=V4L2_PROBE_TIMEOUT_S)
    return [Mode.from_list(m) for m in found]


class CapabilityCache:
    """Probes each device once (by device id) and remembers its modes.

    A probe that fails, or that ran while another program held the device
    (its mode is locked then, so the answer is partial), is not kept: the
    next scan asks again. Thread-safe enough for one scanner at a time.
    """

    def __init__(self, probe: Callable[[Path], list[Mode]] = probe_modes) -> None:
        self._probe = probe
        self._modes: dict[str, list[Mode]] = {}
        self._failed: set[str] = set()
        self.probes = 0  # how many times a device was actually opened to probe

    def modes(self, device_id: str, node: Path) -> list[Mode] | None:
        """The cached modes of ``device_id``, probing ``node`` the first time;
        None when the device cannot be probed now (logged once)."""
        cached = self._modes.get(device_id)
        if cached is not None:
            return cached
        self.probes += 1
        try:
            modes = self._probe(node)
        except CaptureError as exc:
            if device_id not in self._failed:
                log.warning("cannot probe %s: %s", node, exc)
                self._failed.add(device_id)
            return None
        if not modes:
            return None
        if holder_of(node) is None:
            self._modes[device_id] = modes
            self._failed.discard(device_id)
        return modes

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._modes

    def __repr__(self) -> str:
        return f"<CapabilityCache {len(self._modes)} device(s) probes={self.probes}>"


def v4l2_devices(
    cache: CapabilityCache, sysfs_root: Path = SYSFS_ROOT, dev_root: Path = DEV_ROOT
) -> list[Device]:
    """The machine's V4L2 capture nodes as cameras, in node order. Ids come from
    the hardware (USB serial, else the port), never the node number; modes
    are probed once per camera (``cache``)."""
    devices = []
    for node in list_capture_nodes(sysfs_root, dev_root):
        device_id = stable_id("v4l2", *node.identity)
        modes = cache.modes(device_id, node.node)
        if modes:
            devices.append(_camera(node, device_id, modes))
    return devices


def _camera(node: CaptureNode, device_id: str, modes: list[Mode]) -> Device:
    group_id = stable_id("v4l2", "group", *node.group)
    capabilities, defaults = capabilities_of(modes)
    biggest = capabilities["width"]["max"], capabilities["height"]["max"]
    capabilities.update(
        video_capabilities(device_id, group_id, *biggest, capabilities["frameRate"]["max"])
    )
    params = {
        "node": str(node.node),
        "label": node.label,
        "identity": list(node.identity),
        "modes": [m.to_list() for m in modes],
    }
    return Device(
        device_id,
        "videoinput",
        node.label,
        group_id,
        BackendSpec("v4l2", params),
        capabilities,
        defaults,
        native_modes=native_modes(modes),
    )
