"""The gateway process: a daemon client, an HTTP server, until SIGTERM or SIGINT.

It opens one `MediaDevices` for its whole life and relays the daemon's
``devicechange`` to every open page. On SIGTERM it ends every viewer (their
peers see the connection close), stops its tracks and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from mediabroker.config_values import split_listen_address
from mediabroker.daemon.systemd import SystemdNotifier
from mediabroker.web.access import Access, check_listen, is_loopback
from mediabroker.web.app import Gateway, create_app
from mediabroker.web.hub import EncoderHub
from mediabroker.web.whep import WhepSessions
from mediastream import MediaDevices

__all__ = ["GatewaySettings", "run_gateway"]

log = logging.getLogger("mediabroker.web")
QUIET_LOGGERS = ("aioice", "aiortc")  # a line per ICE check at info level


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    listen: str  # host:port
    token: str  # "" for none
    max_viewers: int
    run_dir: Path | None  # the daemon's; None: the client's default

    def check(self) -> tuple[str, int]:
        """(host, port); raises ValueError for an address that needs a token."""
        host, port = split_listen_address(self.listen)
        check_listen(host, self.token)
        return host, port


def run_gateway(settings: GatewaySettings) -> int:
    """Serve until a signal; the exit status."""
    return asyncio.run(_serve(settings))


async def _serve(settings: GatewaySettings) -> int:
    host, port = settings.check()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    devices = await asyncio.to_thread(MediaDevices, settings.run_dir, name="mediabroker web")
    try:
        hub = EncoderHub(devices)
        gateway = Gateway(
            hub=hub,
            sessions=WhepSessions(hub, settings.max_viewers),
            access=Access(is_loopback(host), settings.token, port),
            listen=settings.listen,
        )
        devices.addEventListener(
            "devicechange", lambda _event: loop.call_soon_threadsafe(gateway.device_changed)
        )
        await _run_site(gateway, host, port, stop)
    finally:
        await asyncio.to_thread(devices.close)
    return 0


async def _run_site(gateway: Gateway, host: str, port: int, stop: asyncio.Event) -> None:
    notifier = SystemdNotifier()
    runner = web.AppRunner(create_app(gateway), access_log=None)  # ?token= must not reach a log
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        mode = "this machine, this user" if gateway.access.loopback_only else "token required"
        log.info("serving %s (%s)", where, mode)
        notifier.ready()  # for a systemd unit of Type=notify, and for the tests
        notifier.status(f"serving {where} ({mode})")
        await stop.wait()
        notifier.stopping()
        log.info("stopping: ending %d viewer(s)", len(gateway.sessions))
    finally:
        notifier.close()
        await gateway.sessions.close()
        await gateway.hub.close()
        for queue in list(gateway.event_streams):
            queue.put_nowait("")  # ends each event stream
        gateway.event_streams.clear()
        await runner.cleanup()
