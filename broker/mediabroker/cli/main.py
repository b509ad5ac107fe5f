"""The ``mediabroker`` command: the only place that configures logging.

``serve`` runs a daemon (`mediabroker.cli.serve`); ``devices`` and ``stats``
(`inspect`), ``snapshot`` and ``record`` (`media`) and ``fake-device``
(`fakes`) are clients of a running one; ``demo`` runs both (`demo`);
``web`` serves browsers and WHEP players (`web`, a process of its own);
``install-service`` installs the daemon as a systemd service (`service`). Each
of those modules adds its own sub-command; this one builds the parser, sets
up logging and turns a client's expected failures into one line on stderr.

Exit statuses (`mediabroker.cli.options`): 0 done, 1 failed, 2 a usage or
configuration mistake (argparse's convention; systemd's
``RestartPreventExitStatus=2`` can keep a broken configuration from
restarting in a loop), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mediabroker.cli.demo import add_parser as add_demo
from mediabroker.cli.fakes import add_parser as add_fake_device
from mediabroker.cli.inspect import add_parsers as add_devices_and_stats
from mediabroker.cli.media import add_parsers as add_snapshot_and_record
from mediabroker.cli.options import EXIT_FAILED, EXIT_INTERRUPTED
from mediabroker.cli.serve import add_parser as add_serve
from mediabroker.cli.service import add_parser as add_install_service
from mediabroker.cli.web import add_parser as add_web
from mediabroker.config import DEFAULT_CONFIG_PATH
from mediabroker.config_values import LOG_LEVELS
from mediabroker.errors import CommandError
from mediastream.errors import MediaStreamError

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Share cameras and microphones between local processes through shared memory.

A daemon (serve) owns the devices; clients read frames from shared memory
with the W3C Media Capture and Streams API (Python package mediastream).
"""
EPILOG = f"""\
examples:
  mediabroker serve                      the daemon, as the systemd unit runs it
  mediabroker serve --fake-devices --run-dir /tmp/mb
                                         a daemon of your own with a fake camera and microphone
  mediabroker fake-device add camera     hot-plug a fake camera into the running daemon
  mediabroker devices                    what the daemon offers
  mediabroker stats                      live view of sources, consumers, processes
  mediabroker snapshot camera -o frame.png
  mediabroker record camera -o clip.mp4 --duration 5
  mediabroker record microphone -o tone.wav --duration 2
  mediabroker web                        every camera in a browser: http://127.0.0.1:8089/
  mediabroker install-service            as root: the daemon as a systemd service

The daemon reads {DEFAULT_CONFIG_PATH} when it exists (--config to choose
another); its flags override the file. Clients find the daemon with
--run-dir, else $MEDIABROKER_RUNDIR, else /run/mediabroker when it exists,
else $XDG_RUNTIME_DIR/mediabroker.

exit status: 0 done, 1 failed, 2 usage or configuration error.
Run "mediabroker COMMAND --help" for a command's options.
"""


def main(argv: list[str] | None = None) -> int:
    """Run ``mediabroker ARGV`` (default: ``sys.argv[1:]``); return its exit status.
    A usage mistake exits through argparse with status 2."""
    args = build_parser().parse_args(argv)
    default_level = getattr(args, "log_default", None) or ("WARNING" if args.client else "INFO")
    _configure_logging(args.log_level or default_level)
    if args.client:
        return _run_client(args)
    status: int = args.func(args)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every sub-command with its options and help."""
    parser = argparse.ArgumentParser(
        prog="mediabroker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=list(LOG_LEVELS),
        help="log level (daemon: the configuration's, else info; other commands: warning)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND", title="commands")
    add_serve(commands)  # in the order `mediabroker --help` lists them
    add_fake_device(commands)
    add_devices_and_stats(commands)
    add_snapshot_and_record(commands)
    add_demo(commands)
    add_web(commands)
    add_install_service(commands)
    return parser


def _run_client(args: argparse.Namespace) -> int:
    """Run a client command; its expected failures become one line on stderr."""
    try:
        status: int = args.func(args)
    except CommandError as exc:
        _say(f"error: {exc}")
        return exc.status
    except MediaStreamError as exc:
        _say(f"{exc.name}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    return status


def _say(text: str) -> None:
    print(f"mediabroker: {text}", file=sys.stderr)


# -- logging -------------------------------------------------------------------


SYSLOG_PRIORITIES = {  # sd-daemon(3) prefixes: <N> with N a syslog priority
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _LogFormatter(logging.Formatter):
    """Lines journald keeps readable: under systemd (stderr is the journal)
    each line starts with its syslog priority ``<N>``, which journald turns
    into the entry's priority (``journalctl -p warning``) and strips; the
    journal adds the time itself. On a terminal the time comes first."""

    def __init__(self, journal: bool) -> None:
        base = "%(levelname)s %(name)s: %(message)s"
        super().__init__(base if journal else "%(asctime)s " + base)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        return f"<{SYSLOG_PRIORITIES.get(record.levelno, 6)}>{text}"


def _stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal ($JOURNAL_STREAM)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == expected


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter(_stderr_is_journal()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
