"""What the sub-commands of ``mediabroker`` share: exit statuses, option types
and the options several commands take.

Each command module (`serve`, `inspect`, `media`, `fakes`, `demo`) adds its
own sub-command with `add_command` and sets two defaults on it: ``func``, the
``(args) -> exit status`` that runs it, and ``client``, whether it is a client
of a running daemon (its expected failures become one line on stderr, see
`mediabroker.cli.main`) or runs a daemon itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mediabroker.urls import check_video_url

__all__ = [
    "DEVICE_HELP",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_client_options",
    "add_command",
    "add_size_options",
    "positive_int",
    "positive_seconds",
    "seconds",
    "video_file",
    "video_url",
]

# 2 is argparse's status for a usage mistake; systemd's RestartPreventExitStatus=2
# keeps a broken configuration from restarting in a loop.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

DEVICE_HELP = (
    "a deviceId (or its first 4+ characters), a label or part of one, or "
    "'camera' / 'microphone' for the first of that kind"
)


def add_command(
    commands: Any, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """A sub-command of ``commands`` (the subparsers action): ``summary`` shows
    in ``mediabroker --help``, ``description`` (kept as written) in its own."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--run-dir``, how a client command finds the daemon."""
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="the daemon's run dir (default: $MEDIABROKER_RUNDIR, /run/mediabroker "
        "or $XDG_RUNTIME_DIR/mediabroker)",
    )


def add_size_options(parser: argparse.ArgumentParser) -> None:
    """``--width`` and ``--height`` of the frames to ask a camera for."""
    parser.add_argument("--width", type=positive_int, help="frame width (default: the device's)")
    parser.add_argument("--height", type=positive_int, help="frame height (default: the device's)")


def seconds(text: str) -> float:
    """A duration from 0 to an hour; `argparse.ArgumentTypeError` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 3600 seconds")
    return value


def positive_seconds(text: str) -> float:
    """A duration over 0, up to an hour."""
    value = seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


def positive_int(text: str) -> int:
    """A whole number over 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def video_file(text: str) -> Path:
    """The absolute path of a video file, which need not exist yet (the
    daemon offers it once it is readable); not a directory."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no video file")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a video file")
    return path.absolute()


def video_url(text: str) -> str:
    """A network camera URL (see `mediabroker.urls.check_video_url`); the
    error shows it without its credentials."""
    try:
        return check_video_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
