"""Wheels for tests that install this repository somewhere fresh, offline.

`build_wheel` builds one of our distributions from a copy of its sources
(so that setuptools' ``build/`` and ``*.egg-info`` stay out of the
checkout) with the build backend already installed here: no build
isolation, hence no download, and pip checks that this backend satisfies
the project's ``build-system.requires``.

`repack_installed` turns a distribution installed in this interpreter's
environment back into a wheel: its files as its ``RECORD`` lists them, its
``WHEEL`` tag, a new ``RECORD``. A fresh venv can then get numpy, pyzmq and
msgpack with ``pip install --no-index --find-links``: pip resolves the
client's dependencies for real, with no network and no cache.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

__all__ = [
    "build_wheel",
    "install_offline",
    "offline_pip_env",
    "repack_installed",
    "wheel_files",
    "wheel_metadata",
    "wheel_text",
]

# Written by the installer, not part of a wheel (RECORD is rewritten).
_INSTALLER_FILES = frozenset({"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"})
PIP_TIMEOUT_S = 120.0


def offline_pip_env() -> dict[str, str]:
    """This environment without the machine's pip settings (indexes,
    find-links, constraints): what pip does here depends on its arguments only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def build_wheel(project: Path, copy_of: dict[str, Path], out_dir: Path) -> Path:
    """Build the wheel of the project whose files are ``copy_of`` (a name in
    the copy -> the file or directory it is a copy of), copied to ``project``
    first; returns the wheel's path in ``out_dir``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    for name, source in copy_of.items():
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    before = set(out_dir.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    command += ["--no-build-isolation", "--check-build-dependencies", "-w", str(out_dir)]
    _run([*command, str(project)])
    (wheel,) = set(out_dir.glob("*.whl")) - before
    return wheel


def repack_installed(name: str, out_dir: Path) -> Path:
    """A wheel of the installed distribution ``name`` in ``out_dir``: its
    files but scripts (pip makes those from the entry points) and bytecode."""
    dist = importlib.metadata.distribution(name)
    files = [f for f in dist.files or () if _belongs_in_a_wheel(f.parts)]
    dist_info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    tag = next(line.split(":", 1)[1].strip() for line in _lines(dist, "WHEEL") if "Tag:" in line)
    project = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    wheel = out_dir / f"{project}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for file in files:
            data = Path(str(dist.locate_file(file))).read_bytes()
            archive.writestr(file.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{file.as_posix()},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def install_offline(python: Path, wheelhouse: Path, *wheels: Path) -> None:
    """Install ``wheels`` and their dependencies into the environment of
    ``python`` (which needs no pip of its own) from ``wheelhouse`` alone,
    with this interpreter's pip."""
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    command += ["--no-index", "--find-links", str(wheelhouse), "--no-compile"]
    _run([*command, *map(str, wheels)])


def _belongs_in_a_wheel(parts: tuple[str, ...]) -> bool:
    if parts[0] == ".." or "__pycache__" in parts or parts[-1].endswith(".pyc"):
        return False
    return not (parts[0].endswith(".dist-info") and parts[-1] in _INSTALLER_FILES)


def _lines(dist: importlib.metadata.Distribution, name: str) -> list[str]:
    return (dist.read_text(name) or "").splitlines()


def wheel_metadata(wheel: Path) -> Message:
    """The wheel's METADATA (``Name``, ``Version``, ``Requires-Dist``...)."""
    return Parser().parsestr(wheel_text(wheel, "METADATA"))


def wheel_text(wheel: Path, name: str) -> str:
    """The file ``name`` of the wheel's .dist-info directory."""
    with zipfile.ZipFile(wheel) as archive:
        path = next(n for n in archive.namelist() if n.endswith(f".dist-info/{name}"))
        return archive.read(path).decode()


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _run(command: list[str]) -> None:
    result = subprocess.run(
        command, env=offline_pip_env(), capture_output=True, text=True, timeout=PIP_TIMEOUT_S
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
