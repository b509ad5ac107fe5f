"""``--uninstall``: stop and disable the unit and remove what the install
created (`mediabroker.install_root.Manifest`); the user and group stay
unless ``--purge``, since files elsewhere may belong to them. Standard
library only (see `mediabroker.install`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mediabroker.install_root import (
    PREFIX,
    RUN_DIR,
    SERVICE_USER,
    SYSUSERS,
    TMPFILES,
    UNIT,
    InstallRoot,
    entry,
    systemd_runs,
)

__all__ = ["Uninstaller"]


class Uninstaller(InstallRoot):
    """Removes the service from the root at ``root``. Idempotent."""

    def uninstall(self, *, purge: bool) -> None:
        """Stop and disable the unit, remove what the install created, keep
        the user and group unless ``purge``. Idempotent."""
        self.require_root()
        self.read_manifest()
        self._stop_unit()
        for image_path in [*self.manifest.files, *self.manifest.links] or [
            str(p) for p in (UNIT, SYSUSERS, TMPFILES)
        ]:
            self._remove(Path(image_path))
        self._remove_run_dir()
        self._remove_venv()
        self._remove_dirs()
        self._remove_user(purge)
        if self.live and systemd_runs():
            self.run(["systemctl", "daemon-reload"])

    def _stop_unit(self) -> None:
        if self.live and systemd_runs():
            self.run(["systemctl", "disable", "--now", UNIT.name], check=False)
            self.say(f"stopped and disabled {UNIT.name}")
        elif self.live:
            self.say("systemd is not running here: no service to stop or disable")
        drop_ins = self.path(UNIT.with_name(UNIT.name + ".d"))
        if drop_ins.exists():
            self.say(f"left {UNIT.name}.d/ alone: its drop-ins are yours")

    def _remove(self, image_path: Path) -> None:
        path = self.path(image_path)
        if path.exists() or path.is_symlink():
            path.unlink()
            self.say(f"removed {image_path}")

    def _remove_run_dir(self) -> None:
        path = self.path(RUN_DIR)
        try:
            path.rmdir()
        except FileNotFoundError:
            return
        except OSError:
            self.say(f"left {RUN_DIR}: not empty (is a daemon still running?)")
            return
        self.say(f"removed {RUN_DIR}")

    def _remove_venv(self) -> None:
        venv = self.path(PREFIX)
        if not (venv / "pyvenv.cfg").exists():
            return
        shutil.rmtree(venv)
        self.say(f"removed the venv {PREFIX}")

    def _remove_dirs(self) -> None:
        for image_path in reversed(self.manifest.dirs):
            path = self.path(Path(image_path))
            try:
                path.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                self.say(f"left {image_path}: not empty")
                continue
            self.say(f"removed {image_path}")

    def _remove_user(self, purge: bool) -> None:
        passwd = self.path(Path("/etc/passwd"))
        group = self.path(Path("/etc/group"))
        if not purge:
            if entry(passwd, SERVICE_USER) is not None:
                self.say(f"kept user and group {SERVICE_USER} (--purge removes them)")
            return
        if entry(passwd, SERVICE_USER) is not None:
            self.run(["userdel", *self.prefix_option(), SERVICE_USER])
            self.say(f"removed user {SERVICE_USER}")
        if entry(group, SERVICE_USER) is not None:
            self.run(["groupdel", *self.prefix_option(), SERVICE_USER])
            self.say(f"removed group {SERVICE_USER}")

    # -- running tools ---------------------------------------------------------
