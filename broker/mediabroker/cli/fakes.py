"""``mediabroker fake-device add|remove``: hot-plug a fake device into a running
daemon, or unplug one.

A client of the daemon like the others (``MediaDevices.add_fake_device``);
the daemon lets only root and its own user do it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from mediabroker.cli.device_choice import KIND_WORDS, find_device, kind_noun
from mediabroker.cli.options import EXIT_OK, EXIT_USAGE, add_client_options, add_command
from mediabroker.errors import CommandError
from mediastream import MediaDevices

__all__ = ["add_parser", "run_fake_add", "run_fake_remove"]


def add_parser(commands: Any) -> None:
    """The ``fake-device`` sub-command and its ``add`` and ``remove`` actions."""
    fake = add_command(
        commands,
        "fake-device",
        "plug a fake camera or microphone into a running daemon, or unplug one",
        "Plug a fake device into a running daemon, as if it were hot-plugged: a\n"
        "test-pattern camera (each frame carries its number and a checksum) or a\n"
        "440 Hz tone microphone. Clients see devicechange; unplugging ends the\n"
        "device's tracks (ended). For testing hot-plug handling and for developing\n"
        "consumers on machines without hardware. Only root and the daemon's own\n"
        "user may. (serve --fake-devices starts a daemon that has both from the start.)",
    )
    actions = fake.add_subparsers(required=True, metavar="ACTION", title="actions")
    add = actions.add_parser("add", help="plug in a fake device; prints its deviceId")
    add_client_options(add)
    kinds = sorted(KIND_WORDS)
    others = ", ".join(k for k in kinds if k not in ("camera", "microphone"))
    add.add_argument(
        "kind",
        nargs="?",
        choices=kinds,
        metavar="KIND",
        help=f"what to plug in: camera or microphone (or {others})",
    )
    add.add_argument(
        "--kind", dest="kind_option", choices=kinds, metavar="KIND", help="the same, as an option"
    )
    add.add_argument("--label", help="its label (default: 'Fake camera N' or 'Fake microphone N')")
    add.set_defaults(func=_add, client=True)
    remove = actions.add_parser("remove", help="unplug a fake device (added ones and built-in)")
    add_client_options(remove)
    remove.add_argument("device", metavar="DEVICE", help="its deviceId, or its label")
    remove.set_defaults(func=_remove, client=True)


def _add(args: argparse.Namespace) -> int:
    word = args.kind or args.kind_option
    if word is None:
        raise CommandError(
            "say what to add: camera or microphone (or --kind videoinput|audioinput)", EXIT_USAGE
        )
    return run_fake_add(args.run_dir, KIND_WORDS[word], args.label, sys.stdout)


def _remove(args: argparse.Namespace) -> int:
    return run_fake_remove(args.run_dir, args.device, sys.stdout)


def run_fake_add(run_dir: Path | None, kind: str, label: str | None, out: TextIO) -> int:
    """Plug a fake device of ``kind`` ("videoinput" or "audioinput") into the
    daemon; print its deviceId. The label defaults to "Fake camera N"."""
    with MediaDevices(run_dir, name="mediabroker fake-device") as devices:
        if label is None:
            same = [i for i in devices.enumerateDevices() if i.kind == kind]
            label = f"Fake {kind_noun(kind)} {len(same) + 1}"
        device_id = devices.add_fake_device(kind, label)
    out.write(f"{device_id}\n")
    return EXIT_OK


def run_fake_remove(run_dir: Path | None, query: str, out: TextIO) -> int:
    """Unplug the fake device ``query`` names (`NotFoundError` for any other)."""
    with MediaDevices(run_dir, name="mediabroker fake-device") as devices:
        info = find_device(devices.enumerateDevices(), query)
        devices.remove_fake_device(info.deviceId)
    out.write(f"removed {info.label!r} ({info.deviceId})\n")
    return EXIT_OK
