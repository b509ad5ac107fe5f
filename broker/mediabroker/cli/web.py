"""``mediabroker web``: the WebRTC (WHEP) gateway, a page, snapshots and metrics.

A client of the daemon in a process of its own (`mediabroker.web`), loaded
only here and only when asked for: aiortc, PyAV and aiohttp come with the
``web`` extra, and neither the daemon nor the ``mediastream`` client ever
imports them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mediabroker.cli.options import EXIT_USAGE, add_client_options, add_command
from mediabroker.config import DEFAULT_CONFIG_PATH, load_config
from mediabroker.errors import CommandError, ConfigError

__all__ = ["add_parser"]

WEB_EXTRA = "pip install 'mediabroker[web]'"


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "web",
        "serve a page, WHEP (WebRTC), snapshots and Prometheus metrics over HTTP",
        "Serve every camera and published stream to browsers and WHEP players\n"
        "(OBS, MediaMTX, another host), with one H.264 encoder per source and size.\n"
        "Listens on [web] listen of the configuration (127.0.0.1:8089); an address\n"
        "beyond loopback needs [web] token. On loopback only this user (and root)\n"
        f"may connect. Reads {DEFAULT_CONFIG_PATH} when it exists.\n"
        f"Needs the web extra: {WEB_EXTRA}",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to serve on")
    parser.add_argument("--config", type=Path, metavar="PATH", help="configuration file")
    add_client_options(parser)
    # A client of the daemon (its failures are one line), but a server: it says where it listens.
    parser.set_defaults(func=_web, client=True, log_default="INFO")


def _web(args: argparse.Namespace) -> int:
    try:
        from mediabroker.web.server import GatewaySettings, run_gateway
    except ImportError as exc:
        raise CommandError(f"mediabroker web needs {exc.name}: {WEB_EXTRA}") from None
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc), status=EXIT_USAGE) from None
    settings = GatewaySettings(
        listen=args.listen or config.web_listen,
        token=config.web_token,
        max_viewers=config.web_max_viewers,
        run_dir=args.run_dir,
    )
    try:
        settings.check()
    except ValueError as exc:
        raise CommandError(str(exc), status=EXIT_USAGE) from None
    return run_gateway(settings)
