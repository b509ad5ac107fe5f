"""Two distributions: the client installs alone and reads frames.

`mediastream` (client/pyproject.toml) is what an ML worker installs: the
client and the contract, on numpy, pyzmq and msgpack only, so that it sits
next to the worker's own opencv-python without a second cv2. `mediabroker`
(the root pyproject.toml) is the daemon and its command, and pins the very
same `mediastream`. Here both wheels are built, the client's is installed
alone into a fresh venv, offline (its dependencies repacked from this
environment: see support/wheels.py), and that venv's Python reads frames
from a running daemon with neither OpenCV, sounddevice, psutil nor
`mediabroker` importable.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPO, Daemon
from support.wheels import (
    build_wheel,
    install_offline,
    repack_installed,
    wheel_files,
    wheel_metadata,
    wheel_text,
)

CLIENT_DEPENDENCIES = frozenset({"numpy", "pyzmq", "msgpack"})
CLIENT_IMPORTS = frozenset({"numpy", "zmq", "msgpack", "mediastream"})  # and the stdlib
NOT_IN_THE_CLIENT = ("cv2", "sounddevice", "psutil", "mediabroker")
FRAMES = 5
CHILD_TIMEOUT_S = 30.0


def project_of(pyproject: Path) -> dict[str, object]:
    table: dict[str, object] = tomllib.loads(pyproject.read_text())["project"]
    return table


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


class _Imports(ast.NodeVisitor):
    """The top-level names of a module's absolute imports, at any depth,
    with their lines; ``typing_only`` says which sit under ``TYPE_CHECKING``."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str, bool]] = []
        self._typing_only = False

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self._typing_only = True
        for statement in node.body:
            self.visit(statement)
        self._typing_only = False
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((node.lineno, alias.name.partition(".")[0], self._typing_only))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found.append((node.lineno, node.module.partition(".")[0], self._typing_only))


def imports_beyond_the_client(source: str) -> list[tuple[int, str]]:
    """The imports in ``source`` of anything but the stdlib, numpy, pyzmq,
    msgpack and mediastream (and typing_extensions under ``TYPE_CHECKING``:
    every type checker bundles its stubs), as (line, top-level name)."""
    imports = _Imports()
    imports.visit(ast.parse(source))
    allowed = CLIENT_IMPORTS | sys.stdlib_module_names
    return [
        (line, name)
        for line, name, typing_only in imports.found
        if name not in allowed and not (typing_only and name == "typing_extensions")
    ]


def test_the_import_check_sees_lazy_and_typing_only_imports() -> None:
    source = (
        "import os, numpy.typing\nfrom typing import TYPE_CHECKING\nfrom . import ring\n"
        "def later():\n    import cv2\n"
        "if TYPE_CHECKING:\n    from typing_extensions import TypeVar\n    import mediabroker\n"
        "else:\n    from typing_extensions import Self\n"
    )
    assert imports_beyond_the_client(source) == [
        (5, "cv2"),
        (8, "mediabroker"),
        (10, "typing_extensions"),
    ]


def test_the_client_imports_only_the_stdlib_numpy_pyzmq_and_msgpack() -> None:
    """Every import statement in client/mediastream, at any depth (a lazy
    import runs all the same), and under ``TYPE_CHECKING`` too (py.typed: a
    user's type checker follows those)."""
    found = [
        f"{path.relative_to(REPO)}:{line} {name}"
        for path in sorted((REPO / "client" / "mediastream").rglob("*.py"))
        for line, name in imports_beyond_the_client(path.read_text())
    ]
    assert not found, "the client imports what it must not need:\n  " + "\n  ".join(found)


def test_one_version_and_the_daemon_pins_its_client() -> None:
    """The two pyproject.toml files give one version, and the root requires
    ``mediastream`` at exactly that version: both sides speak one contract."""
    client = project_of(REPO / "client" / "pyproject.toml")
    broker = project_of(REPO / "pyproject.toml")
    assert client["name"] == "mediastream" and broker["name"] == "mediabroker"
    assert client["version"] == broker["version"], (client["version"], broker["version"])
    dependencies = broker["dependencies"]
    assert isinstance(dependencies, list)
    assert f"mediastream=={client['version']}" in dependencies, dependencies
    client_dependencies = client["dependencies"]
    assert isinstance(client_dependencies, list)
    assert {requirement_name(r) for r in client_dependencies} == CLIENT_DEPENDENCIES


@dataclass(frozen=True)
class Built:
    client: Path  # the mediastream wheel
    broker: Path  # the mediabroker wheel
    python: Path  # a fresh venv's interpreter, with the client wheel installed alone
    venv: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Both wheels, built from copies of the sources, and a fresh venv (no
    pip of its own) holding the client and what its metadata requires,
    installed from wheels repacked from this environment: no network."""
    root = tmp_path_factory.mktemp("client-package")
    try:
        wheels = root / "wheels"
        wheels.mkdir()
        client = build_wheel(root / "src-client", {".": REPO / "client"}, wheels)
        broker_sources = {n: REPO / n for n in ("pyproject.toml", "README.md", "broker")}
        broker = build_wheel(root / "src-broker", broker_sources, wheels)
        house = root / "wheelhouse"
        house.mkdir()
        for requirement in wheel_metadata(client).get_all("Requires-Dist") or []:
            repack_installed(requirement_name(requirement), house)
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        install_offline(python, house, client)
        yield Built(client, broker, python, venv)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # a copy of numpy: not worth keeping


def test_the_wheels_hold_one_package_each(built: Built) -> None:
    """The client wheel: mediastream with its py.typed, requiring numpy,
    pyzmq and msgpack only. The daemon's: mediabroker and its command,
    requiring mediastream of the same version, and no copy of it."""
    client, broker = wheel_metadata(built.client), wheel_metadata(built.broker)
    assert (client["Name"], broker["Name"]) == ("mediastream", "mediabroker")
    assert client["Version"] == broker["Version"]
    requires = client.get_all("Requires-Dist") or []
    assert {requirement_name(r) for r in requires} == CLIENT_DEPENDENCIES, requires
    assert f"mediastream=={client['Version']}" in (broker.get_all("Requires-Dist") or [])
    packages = {
        wheel.name: {f.split("/")[0] for f in wheel_files(wheel) if ".dist-info/" not in f}
        for wheel in (built.client, built.broker)
    }
    assert packages == {built.client.name: {"mediastream"}, built.broker.name: {"mediabroker"}}
    assert "mediastream/py.typed" in wheel_files(built.client)
    assert "mediabroker/py.typed" in wheel_files(built.broker)
    assert "mediabroker = mediabroker.cli:main" in wheel_text(built.broker, "entry_points.txt")


def run_in_venv(built: Built, code: str, *args: str) -> dict[str, object]:
    """``code`` run by the venv's Python, isolated (``-I``: no PYTHONPATH,
    no user site, not the working directory), from outside the checkout;
    its last line of output, as JSON."""
    result = subprocess.run(
        [str(built.python), "-I", "-c", code, *args],
        cwd=built.venv,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"in the client's venv:\n{result.stdout}{result.stderr}"
    report: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return report


PROBE = """
import importlib.util, json, sys
import mediastream
print(json.dumps({
    "mediastream": mediastream.__file__,
    "prefix": sys.prefix,
    "importable": [n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None],
}))
"""


def test_the_client_installs_alone(built: Built) -> None:
    """In the fresh venv: mediastream is the installed wheel's, not this
    checkout's, and cv2, sounddevice, psutil and mediabroker are not there."""
    report = run_in_venv(built, PROBE, *NOT_IN_THE_CLIENT)
    assert Path(str(report["prefix"])) == built.venv
    assert Path(str(report["mediastream"])).is_relative_to(built.venv), report
    assert report["importable"] == [], f"importable next to the client alone: {report}"


READER = """
import json, sys
import mediastream

with mediastream.MediaDevices(sys.argv[1], name="client-package") as md:
    track = md.getUserMedia({"video": True}).getVideoTracks()[0]
    frames = [track.read(timeout=10.0) for _ in range(int(sys.argv[2]))]
    report = {
        "seqs": [f.seq for f in frames],
        "shape": list(frames[-1].data.shape),
        "dtype": str(frames[-1].data.dtype),
        "owndata": bool(frames[-1].data.flags.owndata),
    }
    track.stop()
heavy = {"cv2", "sounddevice", "psutil", "mediabroker"}
report["loaded"] = sorted(heavy & {m.partition(".")[0] for m in sys.modules})
print(json.dumps(report))
"""


def test_the_client_alone_reads_frames_from_a_daemon(built: Built, daemon: Daemon) -> None:
    """1. A daemon on fake devices (the test's own run dir and prefix).
    2. The venv's Python opens the fake camera and reads frames: views into
       shared memory, in order, with none of the daemon's libraries loaded.
    3. The daemon stops cleanly and leaves nothing (the `daemon` fixture)."""
    report = run_in_venv(built, READER, str(daemon.run_dir), str(FRAMES))
    seqs = report["seqs"]
    assert isinstance(seqs, list) and len(seqs) == FRAMES and seqs == sorted(set(seqs)), report
    shape = report["shape"]
    assert isinstance(shape, list) and len(shape) == 3 and shape[2] == 3, report
    assert report["dtype"] == "uint8" and report["owndata"] is False, report
    assert report["loaded"] == [], report
