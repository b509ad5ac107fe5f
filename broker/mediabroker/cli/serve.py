"""``mediabroker serve``: the daemon in the foreground, as the systemd unit runs it.

The configuration is the file (``--config``, else the default one when it
exists) with the flags over it (`config_from_args`). The daemon's
lifecycle itself (signals, SIGHUP reloads) is `mediabroker.daemon.broker.serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from mediabroker.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    seconds,
    video_file,
    video_url,
)
from mediabroker.config import (
    DEFAULT_CONFIG_PATH,
    BrokerConfig,
    FileSource,
    NetworkSource,
    load_config,
)
from mediabroker.config_values import LOG_LEVELS
from mediabroker.daemon.broker import serve
from mediabroker.daemon.rundir import RunDir
from mediabroker.errors import ConfigError, StartError

__all__ = ["add_parser", "config_from_args"]

log = logging.getLogger("mediabroker")


def add_parser(commands: Any) -> None:
    """The ``serve`` sub-command."""
    parser = add_command(
        commands,
        "serve",
        "run the daemon in the foreground (what the systemd unit runs)",
        "Run the daemon in the foreground until SIGTERM or SIGINT; log to stderr;\n"
        "SIGHUP re-reads the configuration (devices, file sources, log level).\n"
        f"Reads {DEFAULT_CONFIG_PATH} when it exists; flags override it.",
    )
    _add_daemon_options(parser)
    parser.add_argument(
        "--fake-devices",
        action="store_true",
        help="also offer a test-pattern camera and a sine-tone microphone",
    )
    parser.add_argument(
        "--fake-clock-code",
        action="store_true",
        help="fake cameras paint each frame's capture time (wall clock, ms) as a "
        "barcode, for measuring latency from the pixels (devices.fake_clock_code)",
    )
    parser.add_argument(
        "--no-hardware",
        dest="hardware_devices",
        action="store_false",
        default=None,
        help="do not look for cameras and microphones (fake devices and files only)",
    )
    parser.add_argument(
        "--video-file",
        action="append",
        type=video_file,
        default=[],
        metavar="PATH",
        help="play a video file as a camera, looped (repeatable; replaces the "
        "configuration's [[devices.files]]); one that is missing or unreadable is "
        "offered once it is readable",
    )
    parser.add_argument(
        "--video-url",
        action="append",
        type=video_url,
        default=[],
        metavar="URL",
        help="read a network camera (rtsp://, http:// MJPEG or HLS) as a camera "
        "(repeatable; replaces the configuration's [[devices.network]]); it may hold "
        "credentials, which are never shown",
    )
    parser.set_defaults(func=_serve, client=False)


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
        type=seconds,
        metavar="SECONDS",
        help="grace before an unused device closes (default: devices.idle_close_s, else 3)",
    )


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """The configuration file (``--config``, else the default one when it
    exists) with the command line's flags over it. Raises `ConfigError`."""
    try:
        return load_config(args.config, _overrides(args))
    except ValueError as exc:  # a flag's value the configuration refuses
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys the flags set; a flag left out sets nothing."""
    overrides: dict[str, Any] = {}
    if args.fake_devices:
        overrides["fake_devices"] = True
    if getattr(args, "fake_clock_code", False):
        overrides["fake_clock_code"] = True
    if getattr(args, "hardware_devices", None) is False:
        overrides["hardware_devices"] = False
    if args.video_file:
        overrides["file_sources"] = tuple(FileSource(path) for path in args.video_file)
    if args.video_url:
        overrides["network_sources"] = tuple(NetworkSource(url) for url in args.video_url)
    if args.run_dir is not None:
        overrides["run_dir"] = args.run_dir.absolute()
    if args.shm_prefix is not None:
        overrides["shm_prefix"] = args.shm_prefix
    if args.idle_close is not None:
        overrides["idle_close_s"] = args.idle_close
    if args.log_level is not None:
        overrides["log_level"] = LOG_LEVELS[args.log_level]
    return overrides


def _serve(args: argparse.Namespace) -> int:
    """The ``serve`` command: 2 for a configuration mistake, 1 when the
    daemon cannot start (the run dir is taken, say), 0 after a clean stop."""
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
            asyncio.run(serve(config, load))
        return EXIT_OK
    except StartError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
