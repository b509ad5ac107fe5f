"""The daemon's layout holds: what its main process loads, imports and maps.

The design rests on one process boundary (ARCHITECTURE-REVIEW.md section
3): the daemon's main process never loads a capture driver, OpenCV or
PortAudio; those run in killable capture processes (and short-lived probe
children). The tests here check that from outside, on a fresh interpreter
and on a serving daemon's memory map, and keep the package's shape: no
import cycle, no oversized module or class without a stated reason.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import queue
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from conftest import assert_nothing_left
from mediastream import MediaDevices, MediaStreamTrack
from support import REPO, Daemon, child_env
from support.import_graph import cycles, describe_cycles, import_graph
from support.videos import write_video

BROKER = REPO / "broker" / "mediabroker"
CLIENT = REPO / "client" / "mediastream"

# -- what the main process imports ---------------------------------------------

# The daemon's main process starts here: `mediabroker serve` goes through the
# command line's package (and ``python -m mediabroker`` through __main__).
ENTRY_POINTS = ("mediabroker.daemon.broker", "mediabroker.cli", "mediabroker.__main__")
# av (PyAV, the record extra) is the recorder's alone, imported when it writes H.264.
# aiortc, aiohttp and aioice (the web extra) are the gateway's alone, a process of its own.
FORBIDDEN_PACKAGES = frozenset(
    {"cv2", "sounddevice", "_sounddevice", "av", "aiortc", "aiohttp", "aioice"}
)
# capture/ is what runs inside a capture process. The daemon spawns
# capture_main, so it imports that and what its signature needs; any other
# capture module is a driver (fake, derived, opencv, portaudio, probe...).
CAPTURE_MODULES_THE_DAEMON_MAY_LOAD = frozenset(
    {
        "mediabroker.capture",
        "mediabroker.capture.backend",
        "mediabroker.capture.main",
        "mediabroker.capture.registry",
    }
)


def is_forbidden_in_the_daemon(module: str) -> bool:
    if module.partition(".")[0] in FORBIDDEN_PACKAGES:
        return True
    return (
        module.startswith("mediabroker.capture.")
        and module not in CAPTURE_MODULES_THE_DAEMON_MAY_LOAD
    )


def test_forbidden_modules_are_recognised() -> None:
    """The rule itself: drivers and their libraries out, the spawn target in."""
    for module in (
        "cv2",
        "cv2.data",
        "sounddevice",
        "_sounddevice",
        "mediabroker.capture.fake",
        "mediabroker.capture.derived",
        "mediabroker.capture.opencv",
        "mediabroker.capture.portaudio",
        "mediabroker.capture.probe",
    ):
        assert is_forbidden_in_the_daemon(module), module
    for module in (*CAPTURE_MODULES_THE_DAEMON_MAY_LOAD, "mediabroker.devices.portaudio", "numpy"):
        assert not is_forbidden_in_the_daemon(module), module


def loaded_after_import(module: str) -> tuple[list[str], str]:
    """The modules a fresh interpreter holds after ``import module``, and
    its ``-X importtime`` report (which says who imported what)."""
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = result.stderr
    errors = "\n".join(line for line in report.splitlines() if not line.startswith("import time:"))
    assert result.returncode == 0, f"import {module} failed:\n{errors}"
    loaded: list[str] = json.loads(result.stdout)
    return loaded, report


def import_chains(importtime: str, wanted: Collection[str]) -> dict[str, list[str]]:
    """For each ``wanted`` module, the chain of imports that first loaded it,
    outermost first. ``-X importtime`` prints a module after the modules it
    imported, indented two spaces deeper, so a module's importer is the next
    line one level up."""
    entries: list[tuple[int, str]] = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        field = line.rsplit("|", 1)[1]
        name = field.strip()
        if name != "imported package":
            entries.append(((len(field) - len(field.lstrip()) - 1) // 2, name))
    chains: dict[str, list[str]] = {}
    for position, (depth, name) in enumerate(entries):
        if name not in wanted or name in chains:
            continue
        chain, level = [name], depth
        for later_depth, later in entries[position + 1 :]:
            if later_depth < level:
                chain.append(later)
                level = later_depth
        chains[name] = chain[::-1]
    return chains


def test_import_chains_are_read_from_the_importtime_report() -> None:
    report = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:         1 |          1 |     cv2.data",
            "import time:         1 |          2 |   cv2",
            "import time:         1 |          1 |   json",
            "import time:         1 |          4 | top",
        ]
    )
    assert import_chains(report, {"cv2", "cv2.data", "json"}) == {
        "cv2.data": ["top", "cv2", "cv2.data"],
        "cv2": ["top", "cv2"],
        "json": ["top", "json"],
    }


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_the_main_process_loads_no_capture_driver(entry_point: str) -> None:
    """A fresh interpreter imports the daemon's entry point: no OpenCV, no
    sounddevice, no capture driver is in ``sys.modules``. The message names
    each one and the chain of imports that brought it in."""
    loaded, importtime = loaded_after_import(entry_point)
    forbidden = [m for m in loaded if is_forbidden_in_the_daemon(m)]
    chains = import_chains(importtime, forbidden)
    found = [f"{m} (via {' > '.join(chains.get(m, [m]))})" for m in forbidden]
    ours = [m for m in loaded if m.startswith(("mediabroker", "mediastream"))]
    assert not forbidden, (
        f"import {entry_point} loaded what only a capture process may:\n  "
        + "\n  ".join(found)
        + f"\nour modules it loaded: {', '.join(ours)}"
    )
    assert entry_point in loaded  # the check ran on a real import


# -- what the serving daemon maps ----------------------------------------------

# Matched against every component of each mapped path: OpenCV's wheel puts
# cv2.abi3.so under cv2/ and its FFmpeg under opencv_python_headless.libs/.
CAPTURE_LIBRARIES = ("libopencv*", "cv2*", "opencv*", "*portaudio*", "*sounddevice*", "libjack*")
FILE_SIZE = (160, 120)
FILE_SIZE_AFTER = (320, 240)
EVENT_TIMEOUT_S = 15.0


def capture_libraries_mapped(pid: int) -> list[str]:
    """The mapped files of process ``pid`` that belong to OpenCV, PortAudio,
    sounddevice or JACK."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    fields = [line.split(maxsplit=5) for line in maps.splitlines()]
    paths = {parts[5] for parts in fields if len(parts) == 6}  # anonymous mappings have 5
    return sorted(
        path
        for path in paths
        if any(fnmatch.fnmatch(part, p) for part in Path(path).parts for p in CAPTURE_LIBRARIES)
    )


def test_the_maps_check_sees_opencv_in_a_process_that_loaded_it() -> None:
    """The check itself: this test process has loaded OpenCV (to write videos)."""
    opencv_dir = str(Path(cv2.__file__).parent)
    assert any(path.startswith(opencv_dir) for path in capture_libraries_mapped(os.getpid()))


@pytest.fixture
def scanning_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    """A daemon with fake devices, the real machine's (so that a rescan
    enumerates PortAudio and V4L2 too) and a video file, re-reading the
    device list every 0.2 s."""
    clip = write_video(tmp_path / "clip.avi", *FILE_SIZE)
    config = "[devices]\nscan_interval_s = 0.2\n"
    daemon = Daemon(tmp_path / "run", "--video-file", str(clip), config=config, hardware=True)
    try:
        daemon.wait_ready()
        yield daemon, clip
        assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def open_track(devices: MediaDevices, kind: str, label: str) -> MediaStreamTrack:
    """A track on the device called ``label``, once it delivers."""
    found = [d for d in devices.enumerateDevices() if d.label == label]
    assert len(found) == 1, [d.label for d in devices.enumerateDevices()]
    stream = devices.getUserMedia({kind: {"deviceId": {"exact": found[0].deviceId}}})
    (track,) = stream.getTracks()
    assert track.read(timeout=10) is not None
    return track


def file_width(event: Any) -> int | None:
    """The video file camera's maximum width in a devicechange event."""
    for device in event.devices:
        if device.label == "clip.avi (video file)":
            width: int = device.getCapabilities()["width"]["max"]
            return width
    return None


def test_the_serving_daemon_maps_no_capture_library(
    scanning_daemon: tuple[Daemon, Path],
) -> None:
    """1. Tracks on the fake camera, the fake microphone and the video file
       deliver; the daemon's own process (the stats reply's pid) maps no
       OpenCV, PortAudio or JACK library. Its capture processes may.
    2. The tracks stop and the file is replaced by one twice the size: a
       rescan must probe it again, and a devicechange reports the new size.
    3. The daemon still maps none of those libraries."""
    daemon, clip = scanning_daemon
    with MediaDevices(daemon.run_dir, name="layout") as devices:
        assert devices.broker_stats()["pid"] == daemon.pid
        tracks = [
            open_track(devices, "video", "Fake camera (test pattern)"),
            open_track(devices, "audio", "Fake microphone (440 Hz tone)"),
            open_track(devices, "video", "clip.avi (video file)"),
        ]
        mapped = capture_libraries_mapped(daemon.pid)
        assert not mapped, f"serving three tracks, the daemon (pid {daemon.pid}) maps {mapped}"

        changes: queue.Queue[Any] = queue.Queue()
        devices.addEventListener("devicechange", changes.put)
        for track in tracks:
            track.stop()
        write_video(clip, *FILE_SIZE_AFTER)
        wait_for_width(changes, FILE_SIZE_AFTER[0])
        mapped = capture_libraries_mapped(daemon.pid)
        assert not mapped, f"after a rescan, the daemon (pid {daemon.pid}) maps {mapped}"


def wait_for_width(changes: queue.Queue[Any], width: int) -> None:
    """Block until a devicechange lists the video file camera ``width`` wide."""
    seen: list[int | None] = []
    while width not in seen:
        try:
            seen.append(file_width(changes.get(timeout=EVENT_TIMEOUT_S)))
        except queue.Empty:
            raise AssertionError(
                f"no devicechange with the file {width} wide within {EVENT_TIMEOUT_S:g} s; "
                f"widths seen: {seen}"
            ) from None


# -- import cycles -------------------------------------------------------------


def test_no_import_cycle_in_our_packages() -> None:
    """Function-level imports count; ``if TYPE_CHECKING:`` ones do not (see
    support/import_graph.py for the exact rules)."""
    graph = import_graph([BROKER, CLIENT])
    assert "mediabroker.daemon.broker" in graph and "mediastream.ring" in graph
    found = describe_cycles(graph)
    assert not found, "import cycles (module:line of the import -> ...):\n  " + "\n  ".join(found)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_cycle_finder_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """A synthetic package: a <-> b through a function-level relative import
    is a cycle; c <-> d is not, since c imports d only under TYPE_CHECKING;
    the __init__ importing e (which imports pkg.f, and with it pkg itself) is
    not, since a parent package's implicit import does not count."""
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.e import value\n",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "def later():\n    from . import a\n",
            "pkg/c.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg import d\nelse:\n    import json\n"
            ),
            "pkg/d.py": "import pkg.c\n",
            "pkg/e.py": "import pkg.f\nvalue = 1\n",
            "pkg/f.py": "",
        },
    )
    graph = import_graph([package])
    assert graph["pkg.b"] == {"pkg.a": 2}
    assert graph["pkg.c"] == {}
    assert graph["pkg"] == {"pkg.e": 1} and graph["pkg.e"] == {"pkg.f": 1}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert describe_cycles(graph) == ["pkg.a:1 -> pkg.b:2 -> pkg.a"]


def test_the_cycle_finder_resolves_subpackages_and_names(tmp_path: Path) -> None:
    """``from ..x import name`` two levels up, ``from pkg.sub import name``
    (the package's __init__), ``from pkg.sub import mod`` (the submodule): a
    three-module cycle, reported with its lines, and a self-import."""
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/top.py": "from pkg.sub import deep\n",
            "pkg/sub/__init__.py": "X = 1\n",
            "pkg/sub/deep.py": "\n\nfrom pkg.sub import X\n",
            "pkg/sub/inner/__init__.py": "",
            "pkg/sub/inner/leaf.py": "from ...top import anything\nimport pkg.sub.inner.leaf\n",
            "pkg/sub/more.py": "import pkg.sub.inner.leaf\n",
            "pkg/other.py": "def f():\n    from pkg.sub import more\n",
        },
    )
    graph = import_graph([package])
    assert graph["pkg.sub.deep"] == {"pkg.sub": 3}
    assert graph["pkg.sub.inner.leaf"] == {"pkg.top": 1, "pkg.sub.inner.leaf": 2}
    assert cycles(graph) == [["pkg.sub.inner.leaf"]]
    graph["pkg.sub"] = {"pkg.other": 1}  # X = 1 becomes an import, closing a loop
    assert cycles(graph) == [
        ["pkg.other", "pkg.sub", "pkg.sub.deep", "pkg.sub.inner.leaf", "pkg.sub.more", "pkg.top"]
    ]
    assert describe_cycles(graph) == [
        "pkg.other:2 -> pkg.sub.more:1 -> pkg.sub.inner.leaf:1 -> pkg.top:1 -> pkg.sub.deep:3"
        " -> pkg.sub:1 -> pkg.other"
    ]


# -- sizes ---------------------------------------------------------------------

MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250


def size_exemption(tree: ast.Module) -> str | None:
    """The reason a module's docstring gives on a line ``Size: ...``, if any."""
    docstring = ast.get_docstring(tree) or ""
    for line in docstring.splitlines():
        if line.strip().startswith("Size:") and line.strip()[len("Size:") :].strip():
            return line.strip()[len("Size:") :].strip()
    return None


def oversized(path: Path, root: Path = REPO) -> list[str]:
    """``path`` and each class in it over the limits, unless exempt (named
    relative to ``root``)."""
    text = path.read_text()
    tree = ast.parse(text)
    if size_exemption(tree) is not None:
        return []
    where = path.relative_to(root)
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{where}: module, {lines} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - first + 1
            if length > MAX_CLASS_LINES:
                found.append(
                    f"{where}: class {node.name}, {length} lines (limit {MAX_CLASS_LINES})"
                )
    return found


def test_no_oversized_module_or_class_without_a_reason() -> None:
    """No module of the daemon over 450 lines, no class over 250, unless the
    module's docstring has a line "Size: <why>" (a protocol core, say)."""
    found = [entry for path in sorted(BROKER.rglob("*.py")) for entry in oversized(path)]
    assert not found, "too large, and no 'Size:' line in the docstring says why:\n  " + (
        "\n  ".join(found)
    )


def test_the_size_check_sees_a_long_class_and_honours_a_reason(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_CLASS_LINES))
    long_class = tmp_path / "long.py"
    long_class.write_text(f'"""A module."""\n\n\nclass Big:\n{body}')
    assert oversized(long_class, tmp_path) == [
        f"long.py: class Big, {MAX_CLASS_LINES + 1} lines (limit {MAX_CLASS_LINES})"
    ]
    long_module = tmp_path / "module.py"
    long_module.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert oversized(long_module, tmp_path) == [
        f"module.py: module, {MAX_MODULE_LINES + 1} lines (limit {MAX_MODULE_LINES})"
    ]
    long_module.write_text("x = 1\n" * MAX_MODULE_LINES)
    assert oversized(long_module, tmp_path) == []
    long_class.write_text(f'"""A module.\n\nSize: one table, kept whole.\n"""\nclass Big:\n{body}')
    assert oversized(long_class, tmp_path) == []
    long_class.write_text(f'"""A module.\n\nSize:\n"""\nclass Big:\n{body}')
    assert len(oversized(long_class, tmp_path)) == 1, "a 'Size:' line must give a reason"
