"""A source: one device opened in one mode, its ring, its capture process.

Design note. The state machine is explicit, and `Source._set_state` is the
one place it changes: it logs ``old -> new`` and tells the listener
``source_muted`` when mutedness changes, so no call site fires mute or
unmute by hand. Two changes stay silent: out of STARTING (no track has seen
the source yet, and the first frame is no unmute) and into ENDED or CLOSED
(the tracks end instead).

    STARTING --ready--> LIVE --crash--> RESTARTING --ready--> LIVE
                          |                  ^ (crash: again, after a backoff)
                          +--suspend()--> SUSPENDED --resume()--+
    STARTING, LIVE, RESTARTING --fail, end, too many crashes--> ENDED
    any --close()--> CLOSED

A network camera's source never gives up after a crash: the stream went
away, not our process, so it reconnects after `Backoff` delays (growing up
to ``retry_backoff.max_s``) for as long as it is held, its tracks muted
(`CrashHistory` decides). A failure already logged is not logged again.

Muted: STARTING, RESTARTING, SUSPENDED. SUSPENDED is a deliberate stop
(the camera is being re-opened in another mode), so that process's exit is
no crash. The process handle is `CaptureProcess`; the restart and stall
rules are `RestartPolicy` and `StallWatch`, pure, with their settings in
`BrokerConfig`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mediabroker.capture.backend import RELAY_DRIVER, BackendSpec
from mediabroker.capture.main import CaptureSpec
from mediabroker.childlog import ChildLog
from mediabroker.config import BrokerConfig
from mediabroker.devices import Device
from mediabroker.framing import CROP_AND_SCALE, Framing
from mediabroker.sources.policy import CrashHistory, Progress, StallWatch
from mediabroker.sources.process import CaptureProcess
from mediabroker.sources.reader_files import UNHELD_SLOTS, ReaderFiles
from mediabroker.sources.rings import check_budget, ring_slots
from mediabroker.sources.status import CaptureStatus
from mediastream.errors import NotReadableError
from mediastream.ring import Ring, RingFormat, VideoFormat, ring_bytes

if TYPE_CHECKING:
    from mediabroker.sources.manager import Lease

__all__ = [
    "RECONNECTING_DRIVERS",
    "Source",
    "SourceKey",
    "SourceListener",
    "SourcePlan",
    "SourceState",
]

log = logging.getLogger(__name__)

RECONNECTING_DRIVERS = frozenset({"network"})  # their outages are outside us: retry for good


class SourceState(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    RESTARTING = "restarting"  # a crashed capture process is being started again
    SUSPENDED = "suspended"  # stopped on purpose: the device is re-opened in another mode
    ENDED = "ended"
    CLOSED = "closed"

    @property
    def muted(self) -> bool:
        """No frames for now, more to come: the source's tracks are muted."""
        return self in (SourceState.STARTING, SourceState.RESTARTING, SourceState.SUSPENDED)

    @property
    def finished(self) -> bool:
        """No frames ever again."""
        return self in (SourceState.ENDED, SourceState.CLOSED)


class SourceListener(Protocol):
    def source_muted(self, source: Source, muted: bool) -> None: ...

    def source_ended(self, source: Source, reason: str) -> None: ...

    def source_pinned(self, source: Source, asking: str) -> bool:
        """Whether a track other than holder ``asking`` requires this
        source's own pixels (``resizeMode`` exactly "none"), so that it may
        not become a derived source."""
        ...


SourceKey = tuple[str, RingFormat, float, Framing]


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What a source captures: a device in a mode, through a backend."""

    device: Device
    format: RingFormat
    frame_rate: float  # 0 for audio: the device paces itself
    backend: BackendSpec
    parent: Source | None = None  # the source a derived one reads (same device)
    framing: Framing = CROP_AND_SCALE  # a derived source's crop or letterbox, normalize

    @property
    def key(self) -> SourceKey:
        return (self.device.device_id, self.format, self.frame_rate, self.framing)

    @property
    def produced(self) -> bool:
        """Whether a process's generator feeds it (`mediabroker.capture.relay`):
        its writer paces it, and may fall silent without having hung."""
        return self.backend.driver == RELAY_DRIVER

    @property
    def reconnects(self) -> bool:
        """A network camera's: after a crash it retries for good (see the module's note)."""
        return self.backend.driver in RECONNECTING_DRIVERS


class Source:
    """One device opened in one mode. Created by `SourceManager.acquire`;
    runs on the daemon's asyncio loop."""

    def __init__(
        self,
        source_id: str,
        plan: SourcePlan,
        config: BrokerConfig,
        listener: SourceListener,
        status_endpoint: str,
        ring_tag: str = "",
    ) -> None:
        """``ring_tag`` ends the ring's name (a random one: see `SourceManager`)."""
        self.id = source_id
        self.plan = plan
        self.device, self.format, self.frame_rate = plan.device, plan.format, plan.frame_rate
        self.parent = plan.parent
        self.ring_name = config.shm_prefix + source_id + (f".{ring_tag}" if ring_tag else "")
        self.state = SourceState.STARTING
        self.leases: set[Lease] = set()
        self.parent_lease: Lease | None = None  # a derived source's hold on its parent
        self.opener: int | None = None  # the uid whose request opened it (quotas)
        self.nice = 0  # its capture process's CPU priority (SourceManager decides)
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.counters: dict[str, float] = {}  # the backend's, as last reported
        self.quiet: set[str] = set()  # why a live generator's source is muted (set_quiet)
        self._config, self._listener = config, listener
        self._status_endpoint = status_endpoint
        self._log = ChildLog.for_backend(source_id, plan.backend.params)  # its processes' fd 2
        self._ring: Ring | None = None
        self._process: CaptureProcess | None = None
        self._crashes = CrashHistory(config.restart_policy, config.retry_backoff)
        self._last_failure = ""
        self._timer: asyncio.TimerHandle | None = None  # a pending restart
        self._watch = StallWatch(
            self.frame_rate, config.source_start_timeout_s, time.monotonic(), config.stall_s
        )
        holdable = self._ring_slots() - UNHELD_SLOTS if isinstance(self.format, VideoFormat) else 0
        self.readers = ReaderFiles(source_id, holdable)  # hold tables, doorbells

    @property
    def holders(self) -> list[str]:
        """Who holds this source now, e.g. ``["track:3f2c...", "source:2-video-..."]``."""
        return sorted(lease.holder for lease in self.leases)

    @property
    def muted(self) -> bool:
        return self.state.muted or bool(self.quiet or (self.parent and self.parent.quiet))

    @property
    def newest_seq(self) -> int:
        """The ring's newest frame (0 before the first, or with no ring)."""
        return int(self._ring.header["newest"]) if self._ring is not None else 0

    def set_quiet(self, why: str, quiet: bool) -> None:
        """Mute or unmute a live source for ``why`` ("producer": its writer said
        so; "silent": it wrote nothing a while); tracks see ``mute``/``unmute``."""
        before = self.muted
        (self.quiet.add if quiet else self.quiet.discard)(why)
        if self.state is SourceState.LIVE and before != self.muted:
            self._listener.source_muted(self, self.muted)

    @property
    def pid(self) -> int | None:
        """The capture process's, the last one's once it exited; None before the first."""
        return self._process.pid if self._process is not None else None

    def start(self, seq_base: int = 0) -> None:
        """Create the ring and spawn the capture process; frame numbers go on
        after ``seq_base``. Raises `NotReadableError` when /dev/shm has no room."""
        slots = self._ring_slots()
        check_budget(self._config, self.ring_name, self.format, slots)
        self._ring = Ring.create(
            self.ring_name,
            self.format,
            slots,
            gid=self._config.socket_group,  # mode 0640: the group may map it
            shm_dir=self._config.shm_dir,
        )
        self._ring.header["newest"] = seq_base  # its writer resumes at newest
        self._spawn()

    def _ring_slots(self) -> int:
        return ring_slots(self._config, self.format)

    @property
    def ring_bytes(self) -> int:
        return ring_bytes(self.format, self._ring_slots())

    def _spawn(self) -> None:
        spec = CaptureSpec(
            self.id,
            self.ring_name,
            self.plan.backend,
            self.frame_rate,
            self._status_endpoint,
            os.getpid(),
            self._config.log_level,
            self.nice,
        )
        self._process = CaptureProcess(spec, self.readers.new_channel(), self._on_exit, self._log)
        self._process.start()
        self._watch.restart(time.monotonic())

    @property
    def capturing(self) -> bool:
        """Whether a capture process runs now (what it is handed must be acknowledged)."""
        return self._process is not None and self._process.running

    async def suspend(self) -> None:
        """Stop the capture process without ending the source (to re-open the
        device in another mode): its tracks see ``mute`` until `resume` brings
        frames again. No-op on a finished source."""
        if self.state.finished:
            return
        self._cancel_restart()
        self._set_state(SourceState.SUSPENDED)
        if self._process is not None:
            await self._process.stop(self._config.stop_deadline_s)

    def resume(self, plan: SourcePlan) -> None:
        """Capture again after `suspend`, possibly from another backend (a
        derived one); the first frame unmutes. No-op on a finished source."""
        if self.state.finished:
            return
        self.plan, self.parent = plan, plan.parent
        self._set_state(SourceState.RESTARTING)
        self._spawn()

    def check_progress(self, now: float) -> None:
        """Kill a capture process that stopped delivering (a hung driver, or
        PortAudio blocked on a dead sound server) or never got ready; its
        exit then restarts or ends the source."""
        process = self._process
        if self._ring is None or process is None or not process.running:
            return
        if self.state is SourceState.CLOSED:
            return
        parent = self.parent  # a generator's sizes stand still with it: no stall either
        paced = self.plan.produced or (parent is not None and parent.plan.produced)
        verdict = self._watch.check(
            int(self._ring.header["newest"]),
            now,
            live=self.state is SourceState.LIVE,
            waiting=paced or (parent is not None and parent.state is not SourceState.LIVE),
        )
        if verdict is not Progress.OK:
            quiet_s = self._watch.quiet_s(now)
            self._last_failure = f"capture process {verdict.value} for {quiet_s:.1f} s"
            process.kill(self._last_failure)

    def on_status(self, status: CaptureStatus) -> None:
        """A message from the capture process: ready, counters, failed or
        ended. One from an earlier process of this source (still queued when
        it was replaced) is ignored."""
        if status.pid is not None and status.pid != self.pid:
            return
        if status.counters:
            self.counters = status.counters
        if status.event == "ready":
            self._on_ready()
        elif status.event == "failed":
            self._last_failure = status.reason
        elif status.event == "ended":
            self.end(status.reason)

    def _on_ready(self) -> None:
        self._crashes.recovered()
        if self.state in (SourceState.STARTING, SourceState.RESTARTING):
            self._set_state(SourceState.LIVE)
        if self.state is SourceState.LIVE and not self.started.done():
            self.started.set_result(None)

    def _on_exit(self, process: CaptureProcess) -> None:
        if process is not self._process or self.state.finished:
            return
        if self.state is SourceState.SUSPENDED:
            return  # stopped on purpose
        reason = self._last_failure or f"capture process exited with status {process.exitcode}"
        news = self._crashes.is_news(reason)  # a failure repeated is logged once
        log.log(logging.WARNING if news else logging.DEBUG, "source %s: %s", self.id, reason)
        if self.state is SourceState.STARTING:
            self.end(reason)
            return
        delay_s = self._crashes.next_delay(time.monotonic(), reconnecting=self.plan.reconnects)
        if delay_s is None:
            self.end(self._crashes.give_up(reason, time.monotonic()))
            return
        self._set_state(SourceState.RESTARTING)
        _log_restart(self.id, self.plan.reconnects, news, delay_s)
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._restart)

    def _restart(self) -> None:
        self._timer = None
        if self.state is SourceState.RESTARTING:
            self._last_failure = ""
            self._spawn()

    def _cancel_restart(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def end(self, reason: str) -> None:
        """End the source for good: its tracks fire ``ended``. Idempotent."""
        if self.state.finished:
            return
        log.warning("source %s: ending its tracks: %s", self.id, reason)
        self._set_state(SourceState.ENDED)
        if self._ring is not None:
            self._ring.mark_ended()
        if not self.started.done():
            self.started.set_exception(NotReadableError(f"{self.device.label}: {reason}"))
        self._listener.source_ended(self, reason)

    def _set_state(self, new: SourceState) -> None:
        """The one place the state changes (see the module's note on which
        changes tell the listener)."""
        old = self.state
        if new is old:
            return
        self.state = new
        log.info("source %s: %s -> %s", self.id, old.value, new.value)
        if old is not SourceState.STARTING and not new.finished and old.muted != new.muted:
            if not self.quiet:  # a quiet source stays muted either way
                self._listener.source_muted(self, new.muted)

    async def close(self) -> None:
        """Stop the capture process (SIGTERM, then SIGKILL after the deadline)
        and unlink the ring. Idempotent."""
        if self.state is SourceState.CLOSED:
            return
        self._set_state(SourceState.CLOSED)
        self._cancel_restart()
        if not self.started.done():
            self.started.set_exception(NotReadableError(f"{self.device.label}: source closed"))
        if self._process is not None:
            await self._process.stop(self._config.stop_deadline_s)
        self._log.flush()  # how often its processes repeated themselves
        self.readers.close()
        if self._ring is not None:
            self._ring.close()
            Ring.unlink(self.ring_name, self._config.shm_dir)

    def __repr__(self) -> str:
        label, state = self.device.label, self.state.value
        return f"<Source {self.id} {label!r} {state} holders={len(self.leases)}>"


def _log_restart(source_id: str, reconnects: bool, news: bool, delay_s: float) -> None:
    what = "reconnecting" if reconnects else "restarting the capture process"
    level = logging.INFO if news else logging.DEBUG  # a failure repeated: said once
    log.log(level, "source %s: %s in %.1f s", source_id, what, delay_s)
