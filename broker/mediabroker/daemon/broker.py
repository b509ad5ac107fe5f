"""The daemon's main process: its parts, wired together, and their lifecycle.

Design note. One asyncio loop runs everything here; PortAudio, OpenCV and
the capture drivers never load in this process (capture processes and
probe children do that, and may be killed). The parts:

- `ControlServer` (control.py): the control socket, requests to ops,
  replies, notices, each connection's session;
- the ops (ops.py): what each request does;
- `TrackTable` (tracks.py): the tracks, each a lease on a source, and the
  shared streams that mirror them;
- `SourceManager` (sources/): capture processes and their rings, each
  ring sampled for its measured rate and drops (`RateBook`);
- `DeviceWatch` (device_watch.py): the device list, kept current;
- `Heartbeat` (heartbeat.py): the pulse every client hears, systemd's watchdog.

    NEW --run()--> SERVING --stop set--> STOPPING --> STOPPED
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import zmq
import zmq.asyncio

from mediabroker.config import BrokerConfig
from mediabroker.config import reloadable as reloadable_config
from mediabroker.daemon.control import ControlServer
from mediabroker.daemon.device_watch import DeviceWatch
from mediabroker.daemon.generators import Generators
from mediabroker.daemon.heartbeat import Heartbeat
from mediabroker.daemon.ops import AdminOps, MediaOps, StreamOps
from mediabroker.daemon.quotas import SourceQuota
from mediabroker.daemon.results import ResultOps, ResultRegistry
from mediabroker.daemon.sessions import Session, SessionTable, reap_sessions
from mediabroker.daemon.systemd import SystemdNotifier
from mediabroker.daemon.tracks import TrackTable
from mediabroker.errors import ConfigError, StartError
from mediabroker.filemodes import secure_sockets
from mediabroker.sources import SourceManager, sweep_stale_rings
from mediabroker.sources.rates import RateBook
from mediastream.paths import DAEMON_SOCKETS

__all__ = ["Broker", "BrokerState", "raise_fd_limit", "serve"]

log = logging.getLogger(__name__)

FD_HEADROOM = 1024  # beyond the connections: capture processes, pipes, rings, logs


class BrokerState(enum.Enum):
    NEW = "new"
    SERVING = "serving"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Broker:
    """Serves clients from `run` until its ``stop`` event is set."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.state = BrokerState.NEW
        self._ctx = zmq.asyncio.Context()
        self._notifier = SystemdNotifier()
        self.sessions = SessionTable()
        self.control = ControlServer(config, self.sessions, self._end_session)
        self.tracks = TrackTable(self.control.send_notice, config)
        self.sources = SourceManager(config, self.tracks, self._ctx)
        self.devices = DeviceWatch(config, self.sources, self.sessions, self.control.send_notice)
        self.heartbeat = Heartbeat(self.control.broadcast, self._notifier, self._status_line)
        quota = SourceQuota(config, self.tracks, self.sources)
        media = MediaOps(self.devices, self.sources, self.tracks, self.sessions, quota)
        self.rates = RateBook(config.shm_dir)  # each source's measured rate and drops
        admin = AdminOps(
            config, self.control, self.devices, self.sources, self.sessions, self.rates
        )
        self.generators = Generators(
            config, media, self.sources, self.tracks, self.devices, self.sessions, quota
        )
        self.control.route(
            {
                **media.table(),
                **StreamOps(self.tracks).table(),
                **admin.table(),
                **self.generators.table(),
            }
        )

        self.results = ResultRegistry(config, self.tracks, self.control.send_notice)
        result_ops = ResultOps(self.results, self.tracks)  # ours: per-frame results channels
        self.control.route(result_ops.table())
        self.control.route_no_reply(result_ops.no_reply_table())

    async def run(self, stop: asyncio.Event) -> None:
        """Bind, tell systemd READY=1, serve until ``stop`` is set, then end
        every track, stop every capture process and unlink every ring."""
        sweep_stale_rings(self.config)  # the run dir is RunDir's: made, locked, swept
        raise_fd_limit(self.config.max_connections + FD_HEADROOM)
        workers: list[asyncio.Task[None]] = []
        try:  # a bind that fails still gets the shutdown: what was bound is closed
            await self._bind()
            workers = [asyncio.create_task(c) for c in self._loops()]
            self.state = BrokerState.SERVING
            log.info("serving %d device(s) on %s", len(self.devices.devices), self.config.run_dir)
            self._notifier.ready()
            await stop.wait()
        finally:
            await self._shutdown(workers)

    async def _bind(self) -> None:
        """Bind the daemon's sockets. Raises `StartError` (a full run dir)."""
        try:
            await self.control.start()
            self.sources.bind()
        except (OSError, zmq.ZMQError) as exc:
            raise StartError(
                f"cannot create the daemon's sockets in {self.config.run_dir}: "
                f"{exc.strerror or exc}; make room there (is its file system full?)"
            ) from None
        secure_sockets(self.config)  # mode and group of the sockets just bound

    def _loops(self) -> list[Coroutine[Any, Any, None]]:
        config = self.config
        return [
            self.sources.serve_status(),
            self.sources.watch_progress(),
            self.rates.run(self.sources.index),
            reap_sessions(
                self.sessions, config.heartbeat_s, config.session_timeout_s, self.control.disconnect
            ),
            self.heartbeat.run(config.heartbeat_s),
            self.devices.run(),
            self.generators.watch_silence(),
        ]

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        self.state = BrokerState.STOPPING
        log.info("stopping: ending %d track(s)", len(self.tracks))
        self._notifier.stopping()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.control.close_requests()
        self.results.close_all("the daemon is stopping")
        for track in self.tracks:
            self.tracks.end_track(track, "the daemon is stopping")
        self.control.broadcast("broker", "stopping")
        await self.sources.close_all()
        await self.control.close()
        self._ctx.term()
        for name in DAEMON_SOCKETS:
            (self.config.run_dir / name).unlink(missing_ok=True)
        self._notifier.close()
        self.state = BrokerState.STOPPED
        log.info("stopped")

    async def reload(self, config: BrokerConfig) -> None:
        """SIGHUP: switch to ``config`` (the caller keeps what needs a restart)
        and re-read the devices; ``devicechange`` fires when the list changed."""
        self.config = config
        if self.state is not BrokerState.SERVING:
            await self.devices.reload(config)  # nobody to tell yet
            return
        self._notifier.reloading()
        self.sources.reconfigure(config)  # new capture processes get its log level
        await self.devices.reload(config)
        self._notifier.ready()

    def _end_session(self, session: Session, reason: str) -> None:
        self.sessions.close(session, reason)  # first: its log line counts the tracks held
        self.results.session_gone(session)  # before its tracks: the reason is the session's
        self.generators.drop_session(session)
        self.tracks.drop_session(session)

    def _status_line(self) -> str:
        sources = sum(1 for _ in self.sources)
        return f"{len(self.sessions)} client(s), {len(self.tracks)} track(s), {sources} source(s)"


def raise_fd_limit(needed: int) -> int:
    """Raise the soft limit on open files to ``needed`` (as far as the hard
    limit allows: systemd's default soft limit, 1024, is below what the
    connection caps need) and return it. The caps, not the limit, keep the
    daemon's descriptors bounded; the limit must only sit above them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the open-file limit is %d, below the %d that limits.connections needs: "
            "lower limits.connections or raise LimitNOFILE",
            soft,
            needed,
        )
    return soft


async def serve(config: BrokerConfig, load: Callable[[], BrokerConfig] | None = None) -> None:
    """Run a daemon until SIGTERM or SIGINT; SIGHUP reloads through ``load``.
    The handlers only record the signal; the loop acts on it."""
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


async def _reload_on_hangup(
    broker: Broker, hangup: asyncio.Event, load: Callable[[], BrokerConfig]
) -> None:
    """On each SIGHUP, load the configuration again and apply what can
    change while running; a refused file leaves the running one in place."""
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
