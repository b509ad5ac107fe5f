"""The root an install writes into: / or a scratch directory (``--root``).

Paths are image paths (/opt/mediabroker, /etc/...), mapped onto the root
with `InstallRoot.path`. A manifest in the venv records what an install
created, so that `mediabroker.uninstall` removes exactly that and leaves
alone a directory the system already had. Standard library only (see
`mediabroker.install`).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mediabroker.errors import CommandError

__all__ = [
    "COMMAND_LINK",
    "CONFIG_DIR",
    "MANIFEST",
    "PREFIX",
    "RUN_DIR",
    "SERVICE_USER",
    "SYSUSERS",
    "TMPFILES",
    "UNIT",
    "InstallRoot",
    "Manifest",
    "entry",
    "pid1",
    "systemd_runs",
]

PREFIX = Path("/opt/mediabroker")  # the venv; ExecStart is its bin/mediabroker
UNIT = Path("/etc/systemd/system/mediabroker.service")
SYSUSERS = Path("/etc/sysusers.d/mediabroker.conf")
TMPFILES = Path("/etc/tmpfiles.d/mediabroker.conf")
CONFIG_DIR = Path("/etc/mediabroker")  # config.toml goes here, optional
COMMAND_LINK = Path("/usr/local/bin/mediabroker")  # `mediabroker stats` for admins
RUN_DIR = Path("/run/mediabroker")
MANIFEST = "install-manifest.json"  # in PREFIX
SERVICE_USER = "mediabroker"  # user and group, as in systemd/sysusers.d


@dataclass
class Manifest:
    """What an install created, as image paths: removed again by uninstall."""

    files: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # in creation order

    def add(self, kind: str, path: Path) -> None:
        items: list[str] = getattr(self, kind)
        if str(path) not in items:
            items.append(str(path))

    def to_json(self) -> str:
        return (
            json.dumps({"files": self.files, "links": self.links, "dirs": self.dirs}, indent=2)
            + "\n"
        )

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        return cls(list(data["files"]), list(data["links"]), list(data["dirs"]))


class InstallRoot:
    """The root at ``root``: maps image paths onto it, runs tools on it and
    says each step on ``out``."""

    def __init__(self, root: Path, out: TextIO) -> None:
        self.root = root.resolve()
        self.out = out
        self.live = self.root == Path("/")  # this machine, not a scratch root
        self.manifest = Manifest()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} root={str(self.root)!r} prefix={str(PREFIX)!r}>"

    def path(self, image_path: Path) -> Path:
        """Where ``image_path`` (absolute, in the image) is on this machine."""
        return self.root / image_path.relative_to("/")

    def say(self, text: str) -> None:
        self.out.write(f"{text}\n")
        self.out.flush()

    def require_root(self) -> None:
        if os.geteuid() != 0:
            raise CommandError("run it as root (sudo): it writes /etc and /opt and adds a user")

    def read_manifest(self) -> None:
        self.manifest = Manifest.read(self.path(PREFIX / MANIFEST))

    def save_manifest(self) -> None:
        path = self.path(PREFIX / MANIFEST)
        path.write_text(self.manifest.to_json())
        path.chmod(0o644)

    def root_option(self) -> list[str]:
        """systemd-sysusers' and systemd-tmpfiles' option for this root."""
        return [] if self.live else [f"--root={self.root}"]

    def prefix_option(self) -> list[str]:
        """userdel's and groupdel's option for this root."""
        return [] if self.live else ["--prefix", str(self.root)]

    def run(
        self,
        args: list[str],
        *,
        show: bool = False,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        """Run ``args``, saying so; ``show`` lets its output through (pip's
        progress), otherwise it is shown only when the command fails."""
        self.say(f"$ {' '.join(args)}")
        try:
            result = subprocess.run(
                args,
                stdout=None if show else subprocess.PIPE,
                stderr=None if show else subprocess.STDOUT,
                text=True,
                env=env,
                check=False,
            )
        except OSError as exc:
            raise CommandError(f"{args[0]}: {exc}") from exc
        if result.returncode != 0 and check:
            output = f":\n{result.stdout.rstrip()}" if result.stdout else ""
            raise CommandError(f"{args[0]} failed (exit status {result.returncode}){output}")


def entry(path: Path, name: str) -> list[str] | None:
    """The ``name:...`` line of a passwd-style file, split, or None."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    return next((line.split(":") for line in lines if line.split(":")[0] == name), None)


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()  # what sd_booted(3) checks


def pid1() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return "unknown"
