"""The ``mediabroker`` command: the only place that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .config import BrokerConfig, FileSource
from .server import Broker

__all__ = ["main"]

log = logging.getLogger("mediabroker")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    result: int = args.func(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediabroker",
        description="Share cameras and microphones between local processes through shared memory.",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    _add_daemon_options(serve)
    serve.set_defaults(func=_serve)

    demo = commands.add_parser(
        "demo", help="run a daemon on fake devices and consumers that share its camera"
    )
    demo.add_argument("--consumers", type=int, default=3, help="consumer processes (default 3)")
    demo.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    demo.add_argument("--width", type=int, default=1280)
    demo.add_argument("--height", type=int, default=720)
    demo.set_defaults(func=_demo)
    return parser


def _add_daemon_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fake-devices",
        action="store_true",
        help="offer a test-pattern camera and a sine-tone microphone",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="where the sockets live (default: $MEDIABROKER_RUNDIR, "
        "/run/mediabroker or $XDG_RUNTIME_DIR/mediabroker)",
    )
    parser.add_argument(
        "--shm-prefix",
        help="prefix of every shared-memory segment "
        "(default: $MEDIABROKER_SHM_PREFIX or 'mediabroker.')",
    )
    parser.add_argument(
        "--video-file",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="play a video file as a camera, looped (repeatable)",
    )
    parser.add_argument(
        "--idle-close",
        type=float,
        metavar="SECONDS",
        help="grace before an unused source closes (default 3)",
    )


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    overrides: dict[str, object] = {
        "fake_devices": args.fake_devices,
        "file_sources": tuple(FileSource(path) for path in args.video_file),
        "log_level": logging.getLogger().level,
    }
    if args.run_dir is not None:
        overrides["run_dir"] = args.run_dir
    if args.shm_prefix is not None:
        overrides["shm_prefix"] = args.shm_prefix
    if args.idle_close is not None:
        overrides["idle_close_s"] = args.idle_close
    return BrokerConfig(**overrides)  # type: ignore[arg-type]


def _serve(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    return asyncio.run(serve(config))


async def serve(config: BrokerConfig) -> int:
    """Run a daemon until SIGTERM or SIGINT; the handlers only record the signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Broker(config).run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.consumers, args.duration, args.width, args.height)
