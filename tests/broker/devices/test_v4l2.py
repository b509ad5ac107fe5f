"""V4L2 cameras: what can be tested without a camera or kernel modules.

Enumeration runs against sysfs fixture trees built here the way the kernel
lays them out (class symlinks into /sys/devices, ``name`` and ``index``
attributes, USB ``idVendor``/``idProduct``/``serial`` above the interface).
Probing a real camera is the one thing faked: the probe function is
replaced by one that returns modes and counts its calls, to test the cache.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mediabroker.devices.device import stable_id
from mediabroker.devices.v4l2 import (
    V4L2_CAP_DEVICE_CAPS,
    V4L2_CAP_META_CAPTURE,
    V4L2_CAP_VIDEO_CAPTURE,
    CapabilityCache,
    Mode,
    QueryCap,
    _parse_querycap,
    capabilities_of,
    holder_of,
    in_use_message,
    list_capture_nodes,
    native_modes,
    v4l2_devices,
)
from mediabroker.errors import CaptureError
from support import held_open

USB = "devices/pci0000:00/0000:00:14.0/usb1"


@dataclass
class FixtureNode:
    number: int  # /dev/videoN
    device: str  # the parent device's path under /sys
    name: str
    index: int = 0


def build_sysfs(root: Path, nodes: list[FixtureNode], usb: dict[str, dict[str, str]]) -> Path:
    """A /sys with class/video4linux/videoN symlinks into devices/, as the kernel has it."""
    sysfs = root / "sys"
    for path, attributes in usb.items():
        for name, value in attributes.items():
            (sysfs / path).mkdir(parents=True, exist_ok=True)
            (sysfs / path / name).write_text(value + "\n")
    class_dir = sysfs / "class" / "video4linux"
    class_dir.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        entry = sysfs / node.device / "video4linux" / f"video{node.number}"
        entry.mkdir(parents=True)
        (entry / "name").write_text(node.name + "\n")
        (entry / "index").write_text(f"{node.index}\n")
        (entry / "dev").write_text(f"81:{node.number}\n")
        os.symlink(os.path.relpath(sysfs / node.device, entry), entry / "device")
        os.symlink(os.path.relpath(entry, class_dir), class_dir / f"video{node.number}")
    (sysfs / "class" / "video4linux" / "v4l-subdev0").mkdir()  # not a video node
    return sysfs


USB_ATTRIBUTES = {
    f"{USB}/1-2": {"idVendor": "046d", "idProduct": "0825", "serial": "A1B2C3"},
    f"{USB}/1-3": {"idVendor": "0c45", "idProduct": "6366"},  # no serial
}
WEBCAM = f"{USB}/1-2/1-2:1.0"
NOSERIAL = f"{USB}/1-3/1-3:1.0"
PLATFORM = "devices/platform/vivid.0"


def first_plug() -> list[FixtureNode]:
    return [
        FixtureNode(0, WEBCAM, "Webcam C270", 0),
        FixtureNode(1, WEBCAM, "Webcam C270", 1),  # its metadata node
        FixtureNode(2, NOSERIAL, "USB 2.0 Camera", 0),
        FixtureNode(3, PLATFORM, "vivid-000-vid-cap", 0),
    ]


def renumbered() -> list[FixtureNode]:
    """The same three cameras, plugged in another order."""
    return [
        FixtureNode(0, PLATFORM, "vivid-000-vid-cap", 0),
        FixtureNode(1, NOSERIAL, "USB 2.0 Camera", 0),
        FixtureNode(4, WEBCAM, "Webcam C270", 0),
        FixtureNode(5, WEBCAM, "Webcam C270", 1),
    ]


@pytest.fixture
def dev_root(tmp_path: Path) -> Path:
    """A /dev without device nodes: QUERYCAP cannot be asked, ``index`` decides."""
    root = tmp_path / "dev"
    root.mkdir()
    return root


def test_capture_nodes_are_listed_and_metadata_nodes_skipped(
    tmp_path: Path, dev_root: Path
) -> None:
    sysfs = build_sysfs(tmp_path / "a", first_plug(), USB_ATTRIBUTES)
    nodes = list_capture_nodes(sysfs, dev_root)
    assert [(n.node.name, n.label, n.index) for n in nodes] == [
        ("video0", "Webcam C270", 0),
        ("video2", "USB 2.0 Camera", 0),
        ("video3", "vivid-000-vid-cap", 0),
    ]
    webcam, noserial, platform = nodes
    assert webcam.identity == ("usb", "046d", "0825", "A1B2C3", "1.0", "0")
    assert webcam.group == ("usb", "046d", "0825", "A1B2C3")
    assert noserial.identity == ("path", NOSERIAL, "0")
    assert noserial.group == ("path", f"{USB}/1-3")
    assert platform.identity == ("path", PLATFORM, "0")


def test_ids_survive_renumbering(tmp_path: Path, dev_root: Path) -> None:
    """The node numbers change across replugs; the ids and labels do not."""
    before = list_capture_nodes(build_sysfs(tmp_path / "a", first_plug(), USB_ATTRIBUTES), dev_root)
    after = list_capture_nodes(build_sysfs(tmp_path / "b", renumbered(), USB_ATTRIBUTES), dev_root)
    by_label_before = {n.label: (n.identity, n.node.name) for n in before}
    by_label_after = {n.label: (n.identity, n.node.name) for n in after}
    assert {k: v[0] for k, v in by_label_before.items()} == {
        k: v[0] for k, v in by_label_after.items()
    }
    assert by_label_before["Webcam C270"][1] == "video0"
    assert by_label_after["Webcam C270"][1] == "video4"


def test_a_camera_with_a_serial_keeps_its_id_on_another_port(
    tmp_path: Path, dev_root: Path
) -> None:
    moved_usb = {f"{USB}/1-4": USB_ATTRIBUTES[f"{USB}/1-2"]}
    moved = [FixtureNode(0, f"{USB}/1-4/1-4:1.0", "Webcam C270", 0)]
    before = list_capture_nodes(build_sysfs(tmp_path / "a", first_plug(), USB_ATTRIBUTES), dev_root)
    after = list_capture_nodes(build_sysfs(tmp_path / "b", moved, moved_usb), dev_root)
    assert after[0].identity == before[0].identity


def test_device_caps_decide_when_the_node_can_be_asked(tmp_path: Path, dev_root: Path) -> None:
    """QUERYCAP's device caps beat the ``index`` attribute: a metadata node at
    index 0 is skipped, a capture node at index 1 is kept."""
    nodes = [FixtureNode(0, WEBCAM, "Meta first", 0), FixtureNode(1, WEBCAM, "Capture second", 1)]
    sysfs = build_sysfs(tmp_path, nodes, USB_ATTRIBUTES)
    meta = V4L2_CAP_META_CAPTURE
    caps = {"video0": meta, "video1": V4L2_CAP_VIDEO_CAPTURE}

    def querycap(node: Path) -> QueryCap:
        return QueryCap("uvcvideo", "Webcam", "usb-0000:00:14.0-2", caps[node.name])

    found = list_capture_nodes(sysfs, dev_root, querycap)
    assert [(n.label, n.bus_info) for n in found] == [("Capture second", "usb-0000:00:14.0-2")]


def test_querycap_parsing() -> None:
    """struct v4l2_capability: driver[16] card[32] bus_info[32] version capabilities device_caps."""
    raw = bytearray(104)
    raw[0:8] = b"uvcvideo"
    raw[16:28] = b"Webcam C270\0"
    raw[48:65] = b"usb-0000:00:14.0-2"[:17]
    raw[84:88] = (V4L2_CAP_DEVICE_CAPS | V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_META_CAPTURE).to_bytes(
        4, "little"
    )
    raw[88:92] = V4L2_CAP_META_CAPTURE.to_bytes(4, "little")
    parsed = _parse_querycap(bytes(raw))
    assert (parsed.driver, parsed.card) == ("uvcvideo", "Webcam C270")
    assert parsed.bus_info == "usb-0000:00:14.0-"
    assert not parsed.is_capture  # the device captures, this node carries metadata


def test_no_video4linux_class_means_no_cameras(tmp_path: Path, dev_root: Path) -> None:
    assert list_capture_nodes(tmp_path / "empty-sys", dev_root) == []


MODES = [
    Mode(640, 480, 30.0, "YUYV"),
    Mode(1280, 720, 10.0, "YUYV"),
    Mode(1920, 1080, 5.0, "YUYV"),
    Mode(1280, 720, 30.0, "MJPG"),
    Mode(1920, 1080, 30.0, "MJPG"),
]


class CountingProbe:
    """Stands in for opening a camera (none exists here); counts the opens."""

    def __init__(self, modes: list[Mode] = MODES, fail: set[str] | None = None) -> None:
        self.modes = modes
        self.fail = fail or set()
        self.calls: list[str] = []

    def __call__(self, node: Path) -> list[Mode]:
        self.calls.append(node.name)
        if node.name in self.fail:
            raise CaptureError(f"cannot open {node} for probing")
        return list(self.modes)


def test_each_camera_is_probed_once_across_scans_and_renumbering(
    tmp_path: Path, dev_root: Path
) -> None:
    first = build_sysfs(tmp_path / "a", first_plug(), USB_ATTRIBUTES)
    second = build_sysfs(tmp_path / "b", renumbered(), USB_ATTRIBUTES)
    probe = CountingProbe()
    cache = CapabilityCache(probe)
    scan1 = v4l2_devices(cache, first, dev_root)
    scan2 = v4l2_devices(cache, first, dev_root)
    scan3 = v4l2_devices(cache, second, dev_root)
    assert probe.calls == ["video0", "video2", "video3"]  # once each, never again
    assert cache.probes == 3
    ids = [d.device_id for d in scan1]
    assert ids == [d.device_id for d in scan2]
    assert sorted(ids) == sorted(d.device_id for d in scan3)
    webcam = next(d for d in scan3 if d.label == "Webcam C270")
    assert webcam.backend.driver == "v4l2"
    assert webcam.backend.params["node"] == str(dev_root / "video4")  # where it is now
    assert webcam.device_id == stable_id("v4l2", "usb", "046d", "0825", "A1B2C3", "1.0", "0")


def test_a_failed_probe_is_logged_once_and_tried_again(
    tmp_path: Path, dev_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sysfs = build_sysfs(tmp_path, first_plug(), USB_ATTRIBUTES)
    probe = CountingProbe(fail={"video2"})
    cache = CapabilityCache(probe)
    with caplog.at_level(logging.WARNING, logger="mediabroker.devices.v4l2"):
        labels = [d.label for d in v4l2_devices(cache, sysfs, dev_root)]
        v4l2_devices(cache, sysfs, dev_root)
    assert labels == ["Webcam C270", "vivid-000-vid-cap"]  # the unprobed camera is not offered
    assert probe.calls.count("video2") == 2  # not cached: asked again next scan
    assert len([r for r in caplog.records if "video2" in r.getMessage()]) == 1
    probe.fail.clear()
    assert len(v4l2_devices(cache, sysfs, dev_root)) == 3


def test_capabilities_and_defaults_from_modes() -> None:
    capabilities, defaults = capabilities_of(MODES)
    assert capabilities["width"] == {"min": 1, "max": 1920}
    assert capabilities["height"] == {"min": 1, "max": 1080}
    assert capabilities["frameRate"] == {"min": 1.0, "max": 30.0}
    assert capabilities["resizeMode"] == ["none", "crop-and-scale"]
    assert defaults == {"width": 640, "height": 480, "frameRate": 30.0, "resizeMode": "none"}
    assert native_modes(MODES) == ((640, 480, 30.0), (1280, 720, 30.0), (1920, 1080, 30.0))


@pytest.fixture
def held_file(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    path = tmp_path / "video7"
    with held_open(path) as process:
        yield path, process


def test_holder_of_names_the_process_holding_a_node(
    held_file: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    path, process = held_file
    assert holder_of(path) == (process.pid, "sleep")
    message = in_use_message("Webcam C270", path)
    assert message is not None
    assert f"Webcam C270 ({path}) is in use by pid {process.pid} (sleep)" in message


def test_nobody_holds_a_free_node(tmp_path: Path) -> None:
    free = tmp_path / "video8"
    free.write_bytes(b"")
    assert holder_of(free) is None
    assert in_use_message("cam", free) is None
