"""``mediabroker install-service``: install the daemon as a systemd service,
or remove it (`mediabroker.install`; ``sudo ./systemd/install`` from a clone
runs the same code before any mediabroker command exists)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mediabroker import install
from mediabroker.cli.options import add_command
from mediabroker.install_root import PREFIX

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """The ``install-service`` sub-command."""
    parser = add_command(
        commands,
        "install-service",
        "install the daemon as a systemd service (as root), or --uninstall it",
        f"Install mediabroker as a systemd service, as root: a venv in {PREFIX}\n"
        "with mediastream and mediabroker in it, the unit (ExecStart its mediabroker\n"
        "serve), the sysusers.d and tmpfiles.d files (user and group mediabroker,\n"
        "/run/mediabroker), then systemctl enable and restart where systemd runs.\n"
        "Prints each step. --uninstall removes it all but the user and group\n"
        "(--purge: those too). --root DIR does the same into an image or a scratch\n"
        "directory. From a clone, before anything is installed: sudo ./systemd/install.",
    )
    install.add_arguments(parser)
    parser.set_defaults(func=_install_service, client=False)


def _install_service(args: argparse.Namespace) -> int:
    return install.run(args, sys.stdout, "mediabroker")
