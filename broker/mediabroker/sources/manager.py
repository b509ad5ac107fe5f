"""Sources: one open device in one mode, its ring and its capture process.

Design note. Every track reads a source; every source is shared by all
tracks that asked for the same device and settings. Each holder (a track,
or a source derived from this one) holds a `Lease`, so who keeps a camera
open can be listed (`Source.holders`, shown by ``mediabroker stats``) and a
double release is harmless. When the last lease goes the source closes
after a grace period (a client that stops and re-requests keeps the camera
warm). The supervisor here
restarts a capture process that dies, with backoff: its tracks see ``mute``
and then ``unmute``; too many crashes in a window end the source.

    STARTING --ready--> LIVE --crash--> RESTARTING --ready--> LIVE
        |                 |                  |
        +----fail---------+-----end----------+--too many crashes--> ENDED
    any --close()--> CLOSED
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zmq
import zmq.asyncio

from mediabroker.capture.backend import BackendSpec
from mediabroker.capture.main import CaptureSpec, capture_main, decode_status
from mediabroker.config import BrokerConfig
from mediabroker.daemon.access import secure_endpoint
from mediabroker.devices import Device
from mediabroker.sources.rings import check_budget
from mediastream.errors import NotReadableError
from mediastream.paths import CAPTURE_STATUS, endpoint, socket_path, source_endpoint
from mediastream.ring import AudioFormat, Ring, RingFormat, VideoFormat, read_ring_pids

__all__ = ["Lease", "Source", "SourceListener", "SourceManager", "SourceState", "sweep_stale_rings"]

log = logging.getLogger(__name__)

STALL_S = 2.0  # a live source whose ring does not advance this long is killed
MAX_CRASHES = 5  # within CRASH_WINDOW_S, before the source ends
CRASH_WINDOW_S = 30.0
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
_SPAWN = multiprocessing.get_context("spawn")  # never fork a process with live ZeroMQ contexts


class SourceState(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    RESTARTING = "restarting"
    ENDED = "ended"
    CLOSED = "closed"


class SourceListener(Protocol):
    def source_muted(self, source: Source, muted: bool) -> None: ...

    def source_ended(self, source: Source, reason: str) -> None: ...


SourceKey = tuple[str, RingFormat, float]


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What a source captures: a device in a mode, through a backend."""

    device: Device
    format: RingFormat
    frame_rate: float  # 0 for audio: the device paces itself
    backend: BackendSpec
    parent: Source | None = None  # the source a derived one reads (same device)

    @property
    def key(self) -> SourceKey:
        return (self.device.device_id, self.format, self.frame_rate)


class Source:
    """One device opened in one mode. Created by `SourceManager.acquire`."""

    def __init__(
        self,
        source_id: str,
        plan: SourcePlan,
        config: BrokerConfig,
        listener: SourceListener,
        status_endpoint: str,
    ) -> None:
        self.id = source_id
        self.plan = plan
        self.device, self.format, self.frame_rate = plan.device, plan.format, plan.frame_rate
        self.parent = plan.parent
        self.ring_name = config.shm_prefix + source_id
        self.notify_endpoint = source_endpoint(config.run_dir, source_id)
        self.state = SourceState.STARTING
        self.leases: set[Lease] = set()
        self.parent_lease: Lease | None = None  # a derived source's hold on its parent
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._config = config
        self._listener = listener
        self._status_endpoint = status_endpoint
        self._ring: Ring | None = None
        self._process: Any = None  # multiprocessing.Process: untyped in typeshed's spawn context
        self._exited = asyncio.Event()
        self._crashes: collections.deque[float] = collections.deque(maxlen=MAX_CRASHES)
        self._last_failure = ""
        self._timer: asyncio.TimerHandle | None = None
        self._suspending = False
        self.counters: dict[str, float] = {}  # the backend's, as last reported
        self._progress = (-1, time.monotonic())  # (ring position, when it last moved)
        self.stall_s = max(STALL_S, 3 / self.frame_rate) if self.frame_rate else STALL_S

    @property
    def holders(self) -> list[str]:
        """Who holds this source now, e.g. ``["track:3f2c...", "source:2-video-..."]``."""
        return sorted(lease.holder for lease in self.leases)

    @property
    def muted(self) -> bool:
        return self.state in (SourceState.STARTING, SourceState.RESTARTING)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Create the ring and spawn the capture process. Raises `NotReadableError`
        when /dev/shm has no room for the ring."""
        slots = self._ring_slots()
        check_budget(self._config, self.ring_name, self.format, slots)
        self._ring = Ring.create(
            self.ring_name,
            self.format,
            slots,
            gid=self._config.socket_group,  # mode 0640: the group may map it
            shm_dir=self._config.shm_dir,
        )
        self._spawn()

    def _ring_slots(self) -> int:
        if isinstance(self.format, AudioFormat):
            return int(self.format.sample_rate * self._config.audio_ring_s)
        return self._config.ring_slots

    def _spawn(self) -> None:
        spec = CaptureSpec(
            self.id,
            self.ring_name,
            self.plan.backend,
            self.frame_rate,
            self.notify_endpoint,
            self._status_endpoint,
            os.getpid(),
            self._config.log_level,
        )
        process = _SPAWN.Process(target=capture_main, args=(spec,), name=f"capture-{self.id}")
        process.start()
        self._process = process
        self._exited.clear()
        self._progress = (-1, time.monotonic())
        asyncio.get_running_loop().add_reader(process.sentinel, self._on_exit)
        log.info("source %s: capture process %d started", self.id, process.pid)

    async def suspend(self) -> None:
        """Stop the capture process without ending the source (to re-open the
        device in another mode): its tracks see ``mute`` until `resume`."""
        self._set_state(SourceState.RESTARTING)
        self._listener.source_muted(self, True)
        self._suspending = True
        await self._stop_process()

    def resume(self, plan: SourcePlan) -> None:
        """Capture again, possibly from another backend (a derived one)."""
        self.plan, self.parent = plan, plan.parent
        self._suspending = False
        self._spawn()

    def check_progress(self, now: float) -> None:
        """Kill a capture process that stopped delivering (a hung driver, or
        PortAudio blocked on a dead sound server) or never got ready; the exit
        handler then restarts or ends the source."""
        if self._ring is None or self._exited.is_set() or self.state is SourceState.CLOSED:
            return
        if self.parent is not None and self.parent.state is not SourceState.LIVE:
            self._progress = (self._progress[0], now)  # waiting on a muted parent is no stall
            return
        position, since = self._progress
        newest = int(self._ring.header["newest"])
        if newest != position:
            self._progress = (newest, now)
            return
        live = self.state is SourceState.LIVE
        limit = self.stall_s if live else self._config.source_start_timeout_s
        if now - since > limit:
            what = "delivered nothing" if live else "did not get ready"
            self._last_failure = f"capture process {what} for {now - since:.1f} s"
            log.warning("source %s: %s; killing it", self.id, self._last_failure)
            os.kill(self._process.pid, signal.SIGKILL)

    def on_status(self, event: str, reason: str, counters: dict[str, float]) -> None:
        """A message from the capture process: ready, counters, failed or ended."""
        if counters:
            self.counters = counters
        if event == "ready":
            self._on_ready()
        elif event == "failed":
            self._last_failure = reason
        elif event == "ended":
            self.end(reason)

    def _on_ready(self) -> None:
        secure_endpoint(self._config, self.notify_endpoint)  # before any client learns it
        if self.state is SourceState.STARTING:
            self._set_state(SourceState.LIVE)
            if not self.started.done():
                self.started.set_result(None)
        elif self.state is SourceState.RESTARTING:
            self._set_state(SourceState.LIVE)
            self._listener.source_muted(self, False)

    def _on_exit(self) -> None:
        process = self._process
        asyncio.get_running_loop().remove_reader(process.sentinel)
        process.join()
        self._exited.set()
        if self.state in (SourceState.CLOSED, SourceState.ENDED) or self._suspending:
            return
        reason = self._last_failure or f"capture process exited with status {process.exitcode}"
        log.warning("source %s: %s", self.id, reason)
        if self.state is SourceState.STARTING:
            self.end(reason)
            return
        self._crashes.append(time.monotonic())
        recent = [t for t in self._crashes if time.monotonic() - t < CRASH_WINDOW_S]
        if len(recent) >= MAX_CRASHES:
            self.end(f"capture failed {len(recent)} times in {CRASH_WINDOW_S:g} s; last: {reason}")
            return
        self._schedule_restart(BACKOFF_S[min(len(recent), len(BACKOFF_S)) - 1])

    def _schedule_restart(self, delay_s: float) -> None:
        if self.state is SourceState.LIVE:
            self._set_state(SourceState.RESTARTING)
            self._listener.source_muted(self, True)
        log.info("source %s: restarting the capture process in %.1f s", self.id, delay_s)
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._restart)

    def _restart(self) -> None:
        self._timer = None
        if self.state is SourceState.RESTARTING:
            self._last_failure = ""
            self._spawn()

    def end(self, reason: str) -> None:
        """End the source for good: its tracks fire ``ended``. Idempotent."""
        if self.state in (SourceState.ENDED, SourceState.CLOSED):
            return
        log.warning("source %s: ending its tracks: %s", self.id, reason)
        self._set_state(SourceState.ENDED)
        if self._ring is not None:
            self._ring.mark_ended()
        if not self.started.done():
            self.started.set_exception(NotReadableError(f"{self.device.label}: {reason}"))
        self._listener.source_ended(self, reason)

    def _set_state(self, new: SourceState) -> None:
        log.info("source %s: %s -> %s", self.id, self.state.value, new.value)
        self.state = new

    async def close(self) -> None:
        """Stop the capture process (SIGTERM, then SIGKILL after the deadline)
        and unlink the ring. Idempotent."""
        if self.state is SourceState.CLOSED:
            return
        self._set_state(SourceState.CLOSED)
        if self._timer is not None:
            self._timer.cancel()
        if not self.started.done():
            self.started.set_exception(NotReadableError(f"{self.device.label}: source closed"))
        await self._stop_process()
        if self._ring is not None:
            self._ring.close()
            Ring.unlink(self.ring_name, self._config.shm_dir)
        # The socket file outlives a killed capture process; the run dir is ours.
        socket_path(self.notify_endpoint).unlink(missing_ok=True)

    async def _stop_process(self) -> None:
        process = self._process
        if process is None or self._exited.is_set():
            return
        process.terminate()
        try:
            await asyncio.wait_for(self._exited.wait(), self._config.stop_deadline_s)
        except TimeoutError:
            log.warning(
                "source %s: capture process %d ignored SIGTERM for %.1f s; killing it",
                self.id,
                process.pid,
                self._config.stop_deadline_s,
            )
            os.kill(process.pid, signal.SIGKILL)
            await self._exited.wait()

    def __repr__(self) -> str:
        label, state = self.device.label, self.state.value
        return f"<Source {self.id} {label!r} {state} holders={len(self.leases)}>"


class Lease:
    """One holder's claim on a source, from `SourceManager.acquire` or
    `SourceManager.lease`. `release` is idempotent: the last lease released
    starts the source's idle timer."""

    __slots__ = ("_manager", "holder", "released", "source")

    def __init__(self, manager: SourceManager, source: Source, holder: str) -> None:
        self.source, self.holder, self.released = source, holder, False
        self._manager = manager

    def share(self, holder: str) -> Lease:
        """Another lease on the same source, for ``holder`` (a clone, a mirror)."""
        return self._manager.lease(self.source, holder)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._manager._release(self)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Lease {self.holder} on {self.source.id} {state}>"


class SourceManager:
    """Opens, shares and closes sources; listens to capture processes."""

    def __init__(
        self, config: BrokerConfig, listener: SourceListener, ctx: zmq.asyncio.Context
    ) -> None:
        self._config = config
        self._listener = listener
        self._sources: dict[SourceKey, Source] = {}
        self._by_id: dict[str, Source] = {}
        self._idle_timers: dict[Source, asyncio.TimerHandle] = {}
        self._device_locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self.status_endpoint = endpoint(config.run_dir, CAPTURE_STATUS)
        self._status = ctx.socket(zmq.PULL)
        self._close_tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        """Listen for capture processes' status (before any source starts)."""
        self._status.bind(self.status_endpoint)

    def reconfigure(self, config: BrokerConfig) -> None:
        """SIGHUP: capture processes started from now on get ``config`` (its log level)."""
        self._config = config

    def __iter__(self) -> Iterator[Source]:
        return iter(list(self._by_id.values()))

    def native_of(self, device: Device) -> Source | None:
        """The source running ``device`` in its hardware mode, if one runs."""
        for source in self._by_id.values():
            if source.device.device_id == device.device_id and source.parent is None:
                if source.state not in (SourceState.ENDED, SourceState.CLOSED):
                    return source
        return None

    async def acquire(
        self, device: Device, fmt: RingFormat, frame_rate: float, holder: str
    ) -> Lease:
        """A lease for ``holder`` on a live source for ``device`` in this mode,
        shared when one is open.

        The device runs in one mode (its native source); any other size, rate
        or pixel format is a derived source reading the native one. Raises
        `NotReadableError`.
        """
        async with self._device_locks.setdefault(device.device_id, asyncio.Lock()):
            lease = await self._acquire_mode(device, fmt, frame_rate, holder)
        try:
            await asyncio.wait_for(
                asyncio.shield(lease.source.started), self._config.source_start_timeout_s
            )
        except BaseException as exc:
            lease.release()
            if isinstance(exc, TimeoutError):
                raise NotReadableError(
                    f"{device.label} did not start within {self._config.source_start_timeout_s:g} s"
                ) from exc
            raise
        return lease

    async def _acquire_mode(
        self, device: Device, fmt: RingFormat, frame_rate: float, holder: str
    ) -> Lease:
        """A lease on the source for this mode; one acquire per device at a
        time, so two requests never re-open the same camera at once."""
        native = self.native_of(device)
        if native is not None and not _derivable(native, fmt, frame_rate):
            native = await self._reconfigure(native, fmt, frame_rate)
        native = native or self._open_native(device, fmt, frame_rate)
        source: Source | None = native
        if (native.format, native.frame_rate) != (fmt, frame_rate):
            source = self._sources.get((device.device_id, fmt, frame_rate))
            if source is None or source.state in (SourceState.ENDED, SourceState.CLOSED):
                plan = SourcePlan(device, fmt, frame_rate, _derived_backend(native), native)
                source = self._open(plan)
        assert source is not None
        return self.lease(source, holder)

    async def _reconfigure(self, old: Source, fmt: RingFormat, frame_rate: float) -> Source | None:
        """Re-open a camera in a mode that covers both what it runs and a larger
        request. The old source keeps its ring and its tracks: it becomes a
        derived source of the new one (its tracks see mute, then unmute).
        An old source nobody uses is simply closed (None: open afresh)."""
        if not old.leases:
            self._cancel_idle(old)
            await self._close(old)
            return None
        assert isinstance(fmt, VideoFormat) and isinstance(old.format, VideoFormat)
        width, height, rate = old.device.native_mode_for(
            max(fmt.width, old.format.width),
            max(fmt.height, old.format.height),
            max(frame_rate, old.frame_rate),
        )
        log.info(
            "source %s: re-opening %s at %dx%d %g fps for a larger request",
            old.id,
            old.device.label,
            width,
            height,
            rate,
        )
        await old.suspend()  # frees the camera: only one process may hold it
        native = self._open(
            SourcePlan(old.device, VideoFormat(width, height), rate, old.device.backend)
        )
        parent_lease = self.lease(native, f"source:{old.id}")  # old derives from it now
        try:
            await asyncio.wait_for(
                asyncio.shield(native.started), self._config.source_start_timeout_s
            )
        except BaseException:
            parent_lease.release()
            old.resume(old.plan)  # back as it was
            raise
        old.parent_lease = parent_lease
        old.resume(
            SourcePlan(old.device, old.format, old.frame_rate, _derived_backend(native), native)
        )
        return native

    def _cancel_idle(self, source: Source) -> None:
        timer = self._idle_timers.pop(source, None)
        if timer is not None:
            timer.cancel()

    def _open_native(self, device: Device, fmt: RingFormat, frame_rate: float) -> Source:
        if isinstance(fmt, VideoFormat):
            width, height, frame_rate = device.native_mode_for(fmt.width, fmt.height, frame_rate)
            fmt = VideoFormat(width, height)  # cameras deliver bgr24; others are derived
        return self._open(SourcePlan(device, fmt, frame_rate, device.backend))

    def _open(self, plan: SourcePlan) -> Source:
        source_id = f"{next(self._ids)}-{_mode_name(plan.format, plan.frame_rate)}"
        source = Source(source_id, plan, self._config, self._listener, self.status_endpoint)
        if plan.parent is not None:  # a derived source keeps its parent open
            source.parent_lease = self.lease(plan.parent, f"source:{source_id}")
        try:
            source.start()
        except BaseException:
            if source.parent_lease is not None:
                source.parent_lease.release()
            raise
        self._sources[plan.key] = source
        self._by_id[source_id] = source
        return source

    def family(self, source: Source) -> list[Source]:
        """``source`` and the sources derived from it."""
        return [source, *(s for s in self._by_id.values() if s.parent is source)]

    def lease(self, source: Source, holder: str) -> Lease:
        """Another hold on a source that is open (a cloned or mirrored track,
        a derived source)."""
        lease = Lease(self, source, holder)
        source.leases.add(lease)
        self._cancel_idle(source)
        return lease

    def _release(self, lease: Lease) -> None:
        """The last lease closes the source after the grace period (at once
        when it has ended: there is nothing to keep warm)."""
        source = lease.source
        source.leases.discard(lease)
        if source.leases:
            return
        delay = 0.0 if source.state is SourceState.ENDED else self._config.idle_close_s
        loop = asyncio.get_running_loop()
        self._idle_timers[source] = loop.call_later(delay, self._close_idle, source)

    def _close_idle(self, source: Source) -> None:
        self._idle_timers.pop(source, None)
        if not source.leases:
            task = asyncio.create_task(self._close(source))
            self._close_tasks.add(task)
            task.add_done_callback(self._close_tasks.discard)

    async def _close(self, source: Source) -> None:
        if self._sources.get(source.plan.key) is source:
            del self._sources[source.plan.key]
        self._by_id.pop(source.id, None)
        await source.close()
        if source.parent_lease is not None:
            source.parent_lease.release()

    async def watch_progress(self) -> None:
        """Check every source's progress twice a second (runs forever)."""
        while True:
            await asyncio.sleep(STALL_S / 4)
            now = time.monotonic()
            for source in list(self._by_id.values()):
                source.check_progress(now)

    async def serve_status(self) -> None:
        """Forward capture processes' status messages to their sources (runs forever)."""
        while True:
            message = decode_status(await self._status.recv())
            source = self._by_id.get(str(message.get("source")))
            if source is not None:
                event, reason = str(message.get("event")), str(message.get("reason", ""))
                source.on_status(event, reason, dict(message.get("counters") or {}))

    async def close_all(self) -> None:
        for timer in self._idle_timers.values():
            timer.cancel()
        sources = list(self._by_id.values())
        self._sources.clear()
        self._by_id.clear()
        await asyncio.gather(*(s.close() for s in sources), *self._close_tasks)
        self._status.close(linger=0)


def _derivable(native: Source, fmt: RingFormat, frame_rate: float) -> bool:
    """Whether ``native`` can deliver this mode by crop, scale and decimation
    (never up); audio is always taken as the microphone runs."""
    have = native.format
    if not isinstance(fmt, VideoFormat) or not isinstance(have, VideoFormat):
        return True
    return fmt.width <= have.width and fmt.height <= have.height and frame_rate <= native.frame_rate


def _derived_backend(parent: Source) -> BackendSpec:
    params = {"ring": parent.ring_name, "notify": parent.notify_endpoint, "daemon_pid": os.getpid()}
    return BackendSpec("derived", params)


def _mode_name(fmt: RingFormat, frame_rate: float) -> str:
    if isinstance(fmt, VideoFormat):
        return f"video-{fmt.width}x{fmt.height}-{fmt.pixel_format}-{frame_rate:g}fps"
    return f"audio-{fmt.sample_rate}hz-{fmt.channels}ch"


def sweep_stale_rings(config: BrokerConfig) -> list[str]:
    """Unlink this prefix's segments whose owner and writer are both gone
    (left by a daemon that was killed). Returns the names removed."""
    removed = []
    for path in sorted(config.shm_dir.glob(config.shm_prefix + "*")):
        pids = read_ring_pids(path.name, config.shm_dir)
        if pids is not None and any(pid and _pid_alive(pid) for pid in pids):
            continue
        Ring.unlink(path.name, config.shm_dir)
        removed.append(path.name)
    if removed:
        log.info("removed %d stale segment(s): %s", len(removed), ", ".join(removed))
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An orphaned capture process can stay a zombie for long where PID 1 does
    # not reap (containers without an init): it maps nothing any more.
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[:1] == ["Z"]
