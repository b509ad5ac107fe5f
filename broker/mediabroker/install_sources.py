"""What the service install gives pip: the clone's two distributions, or
the wheels and directories given, copied out of the clone first (an in-tree
build as root would leave root-owned build/ and *.egg-info directories in
it). Standard library only (see `mediabroker.install`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mediabroker.errors import CommandError

__all__ = ["TREE", "names", "stage", "tree_sources"]

TREE = Path(__file__).resolve().parents[2]  # the clone this module runs from
SKIP_WHEN_COPYING = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def tree_sources() -> list[Path]:
    """The clone's distributions: ./client (mediastream) when it is its own
    project, then the root (mediabroker, which depends on it)."""
    if not (TREE / "pyproject.toml").is_file():
        raise CommandError(
            f"{TREE} is not a mediabroker source tree; give --source (a wheel or a "
            "project directory), or run systemd/install from a clone",
            2,
        )
    client = TREE / "client"
    return [client, TREE] if (client / "pyproject.toml").is_file() else [TREE]


def stage(sources: list[Path], tmp: Path) -> list[Path]:
    """Copies of the project directories in ``sources`` under ``tmp`` (wheels
    stay as they are), keeping a project nested in another nested."""
    directories = [s for s in sources if s.is_dir()]
    staged = []
    for source in sources:
        if not source.is_dir():
            staged.append(source)
            continue
        outer = min((d for d in directories if source.is_relative_to(d)), key=_depth)
        base = tmp / str(directories.index(outer))
        if not base.exists():
            shutil.copytree(outer, base, ignore=SKIP_WHEN_COPYING, symlinks=True)
        staged.append(base / source.relative_to(outer))
    return staged


def _depth(path: Path) -> int:
    return len(path.parts)


def names(sources: list[Path]) -> list[str]:
    """The distribution names of ``sources``, to say what was installed."""
    found = []
    for source in sources:
        pyproject = source / "pyproject.toml"
        if pyproject.is_file():
            match = re.search(r'^name\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
            found.append(match[1] if match else source.name)
        else:
            found.append(source.name.split("-")[0])  # a wheel: name-version-...
    return found
