"""The ``mediabroker`` command: the only place that configures logging.

``serve`` and ``fake-device`` run a daemon; ``devices``, ``stats``,
``snapshot`` and ``record`` are clients of a running one (`commands`);
``demo`` runs both. Exit statuses: 0 done, 1 failed, 2 a usage or
configuration mistake (argparse's convention; systemd's
``RestartPreventExitStatus=2`` can keep a broken configuration from
restarting in a loop).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediabroker.config import (
    DEFAULT_CONFIG_PATH,
    LOG_LEVELS,
    BrokerConfig,
    FileSource,
    load_config,
)
from mediabroker.config import reloadable as reloadable_config
from mediabroker.errors import CommandError, ConfigError, StartError
from mediastream.errors import MediaStreamError

if TYPE_CHECKING:
    from mediabroker.daemon.broker import Broker

__all__ = ["config_from_args", "main", "serve"]

log = logging.getLogger("mediabroker")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

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

The daemon reads {DEFAULT_CONFIG_PATH} when it exists (--config to choose
another); its flags override the file. Clients find the daemon with
--run-dir, else $MEDIABROKER_RUNDIR, else /run/mediabroker when it exists,
else $XDG_RUNTIME_DIR/mediabroker.

exit status: 0 done, 1 failed, 2 usage or configuration error.
Run "mediabroker COMMAND --help" for a command's options.
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    daemon = args.func in (_serve, _demo)
    _configure_logging(args.log_level or ("INFO" if daemon else "WARNING"))
    result: int = args.func(args)
    return result


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


# -- the parser ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
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
    _add_serve(commands)
    _add_fake_device(commands)
    _add_devices(commands)
    _add_stats(commands)
    _add_snapshot(commands)
    _add_record(commands)
    _add_demo(commands)
    return parser


def _command(commands: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _add_serve(commands: Any) -> None:
    serve = _command(
        commands,
        "serve",
        "run the daemon in the foreground (what the systemd unit runs)",
        "Run the daemon in the foreground until SIGTERM or SIGINT; log to stderr;\n"
        "SIGHUP re-reads the configuration (devices, file sources, log level).\n"
        f"Reads {DEFAULT_CONFIG_PATH} when it exists; flags override it.",
    )
    _add_daemon_options(serve)
    serve.add_argument(
        "--fake-devices",
        action="store_true",
        help="also offer a test-pattern camera and a sine-tone microphone",
    )
    serve.add_argument(
        "--no-hardware",
        dest="hardware_devices",
        action="store_false",
        default=None,
        help="do not look for cameras and microphones (fake devices and files only)",
    )
    serve.add_argument(
        "--video-file",
        action="append",
        type=_existing_file,
        default=[],
        metavar="PATH",
        help="play a video file as a camera, looped (repeatable; replaces the "
        "configuration's [[devices.files]])",
    )
    serve.set_defaults(func=_serve)


def _add_fake_device(commands: Any) -> None:
    fake = _command(
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
    _add_client_options(add)
    add.add_argument("kind", nargs="?", choices=sorted(FAKE_KINDS), help="what to plug in")
    add.add_argument(
        "--kind", dest="kind_option", choices=sorted(FAKE_KINDS), help="the same, as an option"
    )
    add.add_argument("--label", help="its label (default: 'Fake camera N' or 'Fake microphone N')")
    add.set_defaults(func=_client(_fake_add))
    remove = actions.add_parser("remove", help="unplug a fake device (added ones and built-in)")
    _add_client_options(remove)
    remove.add_argument("device", metavar="DEVICE", help="its deviceId, or its label")
    remove.set_defaults(func=_client(_fake_remove))


FAKE_KINDS = {
    "camera": "videoinput",
    "videoinput": "videoinput",
    "microphone": "audioinput",
    "audioinput": "audioinput",
}


def _add_daemon_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"configuration file (default: {DEFAULT_CONFIG_PATH} when it exists)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="where the sockets live (default: run_dir from the configuration, else "
        "$MEDIABROKER_RUNDIR, /run/mediabroker or $XDG_RUNTIME_DIR/mediabroker)",
    )
    parser.add_argument(
        "--shm-prefix",
        help="prefix of every shared-memory segment "
        "(default: shm_prefix, else $MEDIABROKER_SHM_PREFIX or 'mediabroker.')",
    )
    parser.add_argument(
        "--idle-close",
        type=_seconds,
        metavar="SECONDS",
        help="grace before an unused device closes (default: devices.idle_close_s, else 3)",
    )


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="the daemon's run dir (default: $MEDIABROKER_RUNDIR, /run/mediabroker "
        "or $XDG_RUNTIME_DIR/mediabroker)",
    )


def _add_devices(commands: Any) -> None:
    devices = _command(
        commands,
        "devices",
        "list the devices the daemon offers",
        "A table of the daemon's devices: kind, label, id and what each can do.",
    )
    _add_client_options(devices)
    devices.add_argument("--json", action="store_true", help="print JSON, with every capability")
    devices.set_defaults(func=_client(_devices))


def _add_stats(commands: Any) -> None:
    stats = _command(
        commands,
        "stats",
        "live view of sources, consumers and the daemon's processes",
        "Sources (format, frame rate, frames, drops, shared memory), consumers (pid,\n"
        "name, user, tracks) and the daemon's processes (CPU %, RSS), refreshed every\n"
        "--interval seconds until Ctrl-C. Rates are measured over each interval.",
    )
    _add_client_options(stats)
    stats.add_argument(
        "--json",
        action="store_true",
        help="print one report as JSON (rates over one interval) and exit",
    )
    stats.add_argument(
        "--interval",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="refresh interval (default 1)",
    )
    stats.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop after N refreshes (default: until Ctrl-C)",
    )
    stats.set_defaults(func=_client(_stats))


DEVICE_HELP = (
    "a deviceId (or its first 4+ characters), a label or part of one, or "
    "'camera' / 'microphone' for the first of that kind"
)


def _add_snapshot(commands: Any) -> None:
    snapshot = _command(
        commands,
        "snapshot",
        "save one frame of a camera as an image",
        "Save the next frame of a camera as an image (.png is lossless; .jpg, .bmp,\n"
        ".tiff, ... as OpenCV writes them).",
    )
    _add_client_options(snapshot)
    snapshot.add_argument("device", metavar="DEVICE", help=DEVICE_HELP)
    snapshot.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="the image file to write"
    )
    _add_size_options(snapshot)
    snapshot.set_defaults(func=_client(_snapshot))


def _add_record(commands: Any) -> None:
    record = _command(
        commands,
        "record",
        "record a camera (.avi, .mp4) or a microphone (.wav)",
        "Record a camera to .avi (Motion JPEG) or .mp4 (MPEG-4 Part 2; the headless\n"
        "OpenCV build has no H.264), or a microphone to .wav (16-bit PCM), for\n"
        "--duration seconds of media, with a progress line on stderr. Frames this\n"
        "reader missed are repeated, so the file keeps real time.",
    )
    _add_client_options(record)
    record.add_argument("device", metavar="DEVICE", help=DEVICE_HELP)
    record.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="out.avi, out.mp4 or out.wav",
    )
    record.add_argument(
        "--duration",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds of media to record (default 5)",
    )
    _add_size_options(record)
    record.set_defaults(func=_client(_record))


def _add_size_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=_positive_int, help="frame width (default: the device's)")
    parser.add_argument("--height", type=_positive_int, help="frame height (default: the device's)")


def _add_demo(commands: Any) -> None:
    demo = _command(
        commands,
        "demo",
        "run a daemon on fake devices and consumers that share its camera",
        "Start a daemon on fake devices in a temporary run dir, run consumer processes\n"
        "that share its camera and print their frame rate and latency, then stop\n"
        "everything and check that nothing is left in /dev/shm.",
    )
    demo.add_argument(
        "--consumers", type=_positive_int, default=3, help="consumer processes (default 3)"
    )
    demo.add_argument(
        "--duration", type=_positive_seconds, default=10.0, help="seconds to run (default 10)"
    )
    demo.add_argument("--width", type=_positive_int, default=1280)
    demo.add_argument("--height", type=_positive_int, default=720)
    demo.set_defaults(func=_demo)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 3600 seconds")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return path.absolute()


# -- the daemon ----------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """The configuration file (``--config``, else the default one when it
    exists) with the command line's flags over it. Raises `ConfigError`."""
    overrides: dict[str, Any] = {}
    if args.fake_devices:
        overrides["fake_devices"] = True
    if getattr(args, "hardware_devices", None) is False:
        overrides["hardware_devices"] = False
    if args.video_file:
        overrides["file_sources"] = tuple(FileSource(path) for path in args.video_file)
    if args.run_dir is not None:
        overrides["run_dir"] = args.run_dir.absolute()
    if args.shm_prefix is not None:
        overrides["shm_prefix"] = args.shm_prefix
    if args.idle_close is not None:
        overrides["idle_close_s"] = args.idle_close
    if args.log_level is not None:
        overrides["log_level"] = LOG_LEVELS[args.log_level]
    try:
        return load_config(args.config, overrides)
    except ValueError as exc:  # a flag's value the configuration refuses
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    from mediabroker.daemon.rundir import RunDir

    load = functools.partial(config_from_args, args)
    try:
        config = load()
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    logging.getLogger().setLevel(config.log_level)
    log.info("configuration: %s", config.config_path or "defaults and flags (no file)")
    try:
        with RunDir(config):
            return asyncio.run(serve(config, load))
    except StartError as exc:
        log.error("%s", exc)
        return EXIT_FAILED


async def serve(config: BrokerConfig, load: Callable[[], BrokerConfig] | None = None) -> int:
    """Run a daemon until SIGTERM or SIGINT; SIGHUP reloads through ``load``.
    The handlers only record the signal; the loop acts on it."""
    from mediabroker.daemon.broker import Broker

    stop, hangup = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hangup.set)
    broker = Broker(config)
    reloader = asyncio.create_task(_reload_on_hangup(broker, hangup, load or (lambda: config)))
    try:
        await broker.run(stop)
    finally:
        reloader.cancel()
        await asyncio.gather(reloader, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    return EXIT_OK


async def _reload_on_hangup(
    broker: Broker, hangup: asyncio.Event, load: Callable[[], BrokerConfig]
) -> None:
    while True:
        await hangup.wait()
        hangup.clear()
        log.info("SIGHUP: reading %s", broker.config.config_path or "the flags (no file)")
        try:
            fresh = load()
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            continue
        config, pending = reloadable_config(broker.config, fresh)
        if pending:
            log.warning("%s changed: restart the daemon to apply that", ", ".join(pending))
        await broker.reload(config)
        log.info("reloaded; log level %s", logging.getLevelName(config.log_level).lower())
        logging.getLogger().setLevel(config.log_level)


def _demo(args: argparse.Namespace) -> int:
    from mediabroker.cli.demo import run_demo

    return run_demo(args.consumers, args.duration, args.width, args.height)


# -- the clients ---------------------------------------------------------------


def _client(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a client command; its expected failures become one line on stderr."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:

        try:
            return command(args)
        except CommandError as exc:
            _say(f"error: {exc}")
            return exc.status
        except MediaStreamError as exc:
            _say(f"{exc.name}: {exc}")
            return EXIT_FAILED
        except KeyboardInterrupt:
            _say("interrupted")
            return EXIT_INTERRUPTED

    return run


def _say(text: str) -> None:
    print(f"mediabroker: {text}", file=sys.stderr)


def _devices(args: argparse.Namespace) -> int:
    from mediabroker.cli.commands import run_devices

    return run_devices(args.run_dir, args.json, sys.stdout)


def _stats(args: argparse.Namespace) -> int:
    from mediabroker.cli.commands import run_stats

    return run_stats(args.run_dir, args.json, args.interval, args.count, sys.stdout)


def _snapshot(args: argparse.Namespace) -> int:
    from mediabroker.cli.commands import run_snapshot

    return run_snapshot(args.run_dir, args.device, args.output, args.width, args.height, sys.stdout)


def _fake_add(args: argparse.Namespace) -> int:
    from mediabroker.cli.commands import run_fake_add

    kind = args.kind or args.kind_option
    if kind is None:
        print(
            "mediabroker fake-device add: say what to add: camera or microphone "
            "(or --kind videoinput|audioinput)",
            file=sys.stderr,
        )
        return 2
    return run_fake_add(args.run_dir, FAKE_KINDS[kind], args.label, sys.stdout)


def _fake_remove(args: argparse.Namespace) -> int:
    from mediabroker.cli.commands import run_fake_remove

    return run_fake_remove(args.run_dir, args.device, sys.stdout)


def _record(args: argparse.Namespace) -> int:
    from mediabroker.cli.commands import run_record

    return run_record(
        args.run_dir, args.device, args.output, args.duration, args.width, args.height, sys.stderr
    )
