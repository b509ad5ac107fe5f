"""Install mediabroker as a system service, and remove it again.

``sudo ./systemd/install`` (from a clone) and ``mediabroker install-service``
run this. It makes a virtualenv under /opt/mediabroker (the system Python
refuses ``pip install`` as root: PEP 668), pip-installs mediastream and
mediabroker into it, writes systemd/'s unit, sysusers.d and tmpfiles.d
files into /etc, runs systemd-sysusers and systemd-tmpfiles for them, and
enables and (re)starts the unit when systemd runs. ``--uninstall`` undoes it
and keeps the user and group unless ``--purge``.

Design notes:

- Standard library only, like the modules it shares the work with
  (`mediabroker.install_root`, `mediabroker.install_sources`,
  `mediabroker.uninstall`) and `mediabroker.errors`: before the install
  nothing but the system ``python3`` exists to run it.
- It installs from the clone it runs from (its systemd/ files, and by
  default its ./client and . for pip), so `mediabroker install-service`
  works from a clone's editable install and refuses elsewhere.
- Every path is an image path (/opt/mediabroker, /etc/...), prefixed by
  ``--root`` where files are touched: with ``--root DIR`` the same code
  writes a scratch root (tests, image builds), runs the systemd tools with
  ``--root`` and never systemctl. The venv's scripts are relocated to the
  image path, so its ``ExecStart`` is right inside the image.
- A manifest in the venv records what the install created (files, links,
  directories that did not exist), so ``--uninstall`` removes exactly that
  and leaves a directory the system already had.
- Sources are copied to a temporary directory before pip builds them
  (`mediabroker.install_sources`): an in-tree build as root would leave
  root-owned build/ and *.egg-info directories in the user's clone.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mediabroker.errors import CommandError
from mediabroker.install_root import (
    COMMAND_LINK,
    CONFIG_DIR,
    PREFIX,
    RUN_DIR,
    SERVICE_USER,
    SYSUSERS,
    TMPFILES,
    UNIT,
    InstallRoot,
    entry,
    pid1,
    systemd_runs,
)
from mediabroker.install_sources import TREE, names, stage, tree_sources
from mediabroker.uninstall import Uninstaller

__all__ = ["Installer", "Options", "add_arguments", "main", "run"]

MIN_PYTHON = (3, 11)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``systemd/install`` and ``mediabroker install-service``."""
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="stop and disable the service, remove the unit, the sysusers.d and "
        "tmpfiles.d files and the venv; keeps the user and group",
    )
    parser.add_argument(
        "--purge", action="store_true", help="with --uninstall: remove the user and group too"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="install into DIR as the root of an image (every path prefixed, systemd "
        "tools run with --root, systemctl not run); for tests and image builds",
    )
    parser.add_argument(
        "--source",
        type=Path,
        action="append",
        metavar="PATH",
        help="what pip installs, a wheel or a project directory; repeat for several "
        f"(default: {TREE}/client and {TREE})",
    )
    parser.add_argument(
        "--python",
        type=Path,
        help="the Python the venv is made from (default: /usr/bin/python3); it must "
        "not live under /home or /root, which the unit hides",
    )
    parser.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let the venv see the system Python's packages (e.g. Debian's "
        "python3-numpy); pip installs only what they do not satisfy",
    )
    parser.add_argument(
        "--no-apt",
        action="store_true",
        help="do not apt-get install python3-venv when the venv module is missing; say so",
    )


def main(argv: list[str] | None = None) -> int:
    """``systemd/install ARGV``: install (or ``--uninstall``); the exit status."""
    parser = argparse.ArgumentParser(
        prog="systemd/install",
        description="Install mediabroker as a systemd service (a venv in "
        f"{PREFIX}, the unit, its user and run dir), or remove it.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), sys.stdout, parser.prog)


def run(args: argparse.Namespace, out: TextIO, prog: str) -> int:
    """Install or uninstall as ``args`` say, telling ``out`` what was done.
    Returns the exit status; a failure is one ``PROG: error:`` line on stderr."""
    try:
        if args.uninstall:
            Uninstaller(args.root, out).uninstall(purge=args.purge)
        elif args.purge:
            raise CommandError("--purge goes with --uninstall", 2)
        else:
            Installer(args.root, out).install(_options(args))
    except CommandError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run it again to finish, or --uninstall", file=sys.stderr)
        return 130
    return 0


@dataclass
class Options:
    """What to install: ``sources`` for pip, from ``python``."""

    sources: list[Path]
    python: Path
    system_site_packages: bool = False
    apt: bool = True


def _options(args: argparse.Namespace) -> Options:
    if not (TREE / "systemd" / UNIT.name).is_file():
        raise CommandError(
            f"{TREE} is not a clone of mediabroker (no systemd/{UNIT.name}): the "
            "service installs from one, as root: ./systemd/install",
            2,
        )
    sources = args.source or tree_sources()
    for source in sources:
        if not source.exists():
            raise CommandError(f"--source {source} does not exist", 2)
    return Options(
        sources=[s.resolve() for s in sources],
        python=args.python or _default_python(),
        system_site_packages=args.system_site_packages,
        apt=not args.no_apt,
    )


def _default_python() -> Path:
    system = Path("/usr/bin/python3")
    if system.exists():
        return system
    found = shutil.which("python3")
    if found is None:
        raise CommandError("no python3 found; give --python", 2)
    return Path(found)


class Installer(InstallRoot):
    """Installs the service into the root at ``root``."""

    def install(self, options: Options) -> None:
        """Install or upgrade: venv, packages, files, user, run dir, unit.
        Idempotent: a second run upgrades the packages and rewrites the files."""
        self.require_root()
        tools = self._systemd_tools()
        self.read_manifest()
        umask = os.umask(0o022)  # the service user reads the venv and the files
        try:
            self._make_venv(options)
            self.save_manifest()  # an install that fails later can still be undone
            self._pip_install(options.sources)
            self._write_files()
            self.save_manifest()
        finally:
            os.umask(umask)
        self._create_user(tools["systemd-sysusers"])
        self._create_run_dir(tools["systemd-tmpfiles"])
        self._start_unit()
        self.say(
            f"done. Users who may use the broker join group {SERVICE_USER}: "
            f"usermod -aG {SERVICE_USER} NAME (from their next login)"
        )

    def _systemd_tools(self) -> dict[str, str]:
        tools = {}
        for name in ("systemd-sysusers", "systemd-tmpfiles"):
            path = shutil.which(name)
            if path is None:
                raise CommandError(
                    f"{name} is missing: this is no systemd system (on Debian and "
                    "Ubuntu: apt-get install systemd)"
                )
            tools[name] = path
        return tools

    def _make_venv(self, options: Options) -> None:
        venv = self.path(PREFIX)
        if (venv / "bin" / "python").exists():
            self.say(f"reusing the venv {PREFIX}")
            return
        if venv.exists() and any(venv.iterdir()):
            raise CommandError(f"{venv} exists and is not a virtualenv; move it away first")
        self._check_python(options)
        self._make_parents(venv)
        args = [str(options.python), "-m", "venv"]
        if options.system_site_packages:
            args.append("--system-site-packages")
        self.run([*args, str(venv)])
        self.manifest.add("dirs", PREFIX)
        self.say(f"made the venv {PREFIX} (from {options.python})")

    def _check_python(self, options: Options) -> None:
        python = options.python
        if python.resolve().is_relative_to("/home") or python.resolve().is_relative_to("/root"):
            raise CommandError(
                f"{python} lives under /home or /root, which the unit hides (ProtectHome=); "
                "give --python /usr/bin/python3"
            )
        version = self._python_version(python)
        if version < MIN_PYTHON:
            raise CommandError(
                f"{python} is Python {version[0]}.{version[1]}; mediabroker needs "
                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later: give --python"
            )
        if not self._has_venv_module(python):
            self._install_venv_module(options)

    def _python_version(self, python: Path) -> tuple[int, int]:
        code = "import sys; print(*sys.version_info[:2])"
        try:
            result = subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, check=True
            )
            major, minor = result.stdout.split()
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            raise CommandError(f"{python} does not run as a Python: {exc}", 2) from exc
        return int(major), int(minor)

    @staticmethod
    def _has_venv_module(python: Path) -> bool:
        # Debian and Ubuntu split ensurepip (which venv needs) into python3-venv.
        check = [str(python), "-c", "import ensurepip, venv"]
        return subprocess.run(check, capture_output=True, check=False).returncode == 0

    def _install_venv_module(self, options: Options) -> None:
        missing = (
            f"{options.python} cannot make a venv: its ensurepip module is missing "
            "(on Debian and Ubuntu it is the package python3-venv)"
        )
        apt = shutil.which("apt-get")
        if not options.apt or apt is None:
            raise CommandError(f"{missing}; install it: apt-get install python3-venv")
        self.say("installing python3-venv with apt-get (python3 -m venv needs it)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        self.run([apt, "update", "-qq"], env=env)
        self.run([apt, "install", "-y", "-qq", "--no-install-recommends", "python3-venv"], env=env)
        if not self._has_venv_module(options.python):
            raise CommandError(f"{missing}, still, after installing python3-venv")

    def _pip_install(self, sources: list[Path]) -> None:
        python = self.path(PREFIX / "bin" / "python")
        with tempfile.TemporaryDirectory(prefix="mediabroker-install-") as tmp:
            staged = stage(sources, Path(tmp))
            self.run(
                [
                    str(python), "-m", "pip", "install", "--upgrade",
                    "--disable-pip-version-check", "--root-user-action=ignore",
                    *map(str, staged),
                ],
                show=True,
            )  # fmt: skip
        if not self.live:
            self._relocate_scripts()
        self.say(f"installed {', '.join(names(sources))} into {PREFIX}")

    def _relocate_scripts(self) -> None:
        """Scripts and pyvenv.cfg name the venv by where it was made; make
        that the image path, where the unit will run them."""
        staged, final = str(self.path(PREFIX)), str(PREFIX)
        venv = self.path(PREFIX)
        for path in [venv / "pyvenv.cfg", *sorted((venv / "bin").iterdir())]:
            if path.is_symlink() or not path.is_file():
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue  # a binary
            if staged in text:
                path.write_text(text.replace(staged, final))

    def _write_files(self) -> None:
        systemd = TREE / "systemd"
        unit = _with_exec_start((systemd / UNIT.name).read_text(), PREFIX / "bin" / "mediabroker")
        self._write(UNIT, unit)
        self._write(SYSUSERS, (systemd / "sysusers.d" / SYSUSERS.name).read_text())
        self._write(TMPFILES, (systemd / "tmpfiles.d" / TMPFILES.name).read_text())
        if not self.path(CONFIG_DIR).is_dir():
            self._make_parents(self.path(CONFIG_DIR) / "config.toml")
            self.say(f"made {CONFIG_DIR} (config.toml there is optional)")
        self._link_command()

    def _write(self, image_path: Path, text: str) -> None:
        target = self.path(image_path)
        self._make_parents(target)
        temporary = target.with_name(f".{target.name}.new")
        temporary.write_text(text)
        temporary.chmod(0o644)
        temporary.replace(target)
        self.manifest.add("files", image_path)
        self.say(f"wrote {image_path}")

    def _link_command(self) -> None:
        link = self.path(COMMAND_LINK)
        target = PREFIX / "bin" / "mediabroker"
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        if link.exists() or link.is_symlink():
            self.say(f"left {COMMAND_LINK} alone (not ours); the command is {target}")
            return
        self._make_parents(link)
        link.symlink_to(target)
        self.manifest.add("links", COMMAND_LINK)
        self.say(f"linked {COMMAND_LINK} -> {target}")

    def _make_parents(self, path: Path) -> None:
        """mkdir -p ``path``'s parent, recording each directory it creates."""
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)  # whatever the umask
            self.manifest.add("dirs", Path("/") / directory.relative_to(self.root))

    def _create_user(self, sysusers: str) -> None:
        self.run([sysusers, *self.root_option(), SYSUSERS.name])
        passwd = entry(self.path(Path("/etc/passwd")), SERVICE_USER)
        if passwd is None:
            raise CommandError(f"systemd-sysusers did not create the user {SERVICE_USER}")
        groups = [
            line.split(":")[0]
            for line in self.path(Path("/etc/group")).read_text().splitlines()
            if SERVICE_USER in line.split(":")[-1].split(",")
        ]
        self.say(
            f"user and group {SERVICE_USER} (uid {passwd[2]}, gid {passwd[3]}), "
            f"also in {' '.join(groups) or 'no other group'}"
        )

    def _create_run_dir(self, tmpfiles: str) -> None:
        self.run([tmpfiles, *self.root_option(), "--create", TMPFILES.name])
        self.say(f"made {RUN_DIR} for clients to find the system daemon")

    def _start_unit(self) -> None:
        name = UNIT.name
        if not self.live:
            self.say(f"--root: systemctl not run; in the image: systemctl enable {name}")
            return
        if not systemd_runs():
            self.say(
                f"systemd is not running here (PID 1 is {pid1()}), so nothing was enabled "
                f"or started; where it runs: systemctl daemon-reload && "
                f"systemctl enable --now {name}"
            )
            return
        self.run(["systemctl", "daemon-reload"])
        self.run(["systemctl", "enable", name])
        self.run(["systemctl", "restart", name])
        self.say(f"enabled and (re)started {name}: systemctl status {name}")

    # -- uninstall -------------------------------------------------------------


def _with_exec_start(unit: str, program: Path) -> str:
    lines, count = re.subn(r"^ExecStart=\S+", f"ExecStart={program}", unit, flags=re.MULTILINE)
    if count != 1:
        raise CommandError(f"the unit has {count} ExecStart= lines, expected one")
    return lines
