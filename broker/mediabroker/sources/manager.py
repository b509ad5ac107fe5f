"""Sharing sources: one per device and mode, held by leases, closed when idle.

Design note. Every track reads a source; every source is shared by all
tracks that asked for the same device and settings. Each holder (a track,
or a source derived from this one) holds a `Lease`, so who keeps a camera
open can be listed (`Source.holders`, shown by ``mediabroker stats``) and a
double release is harmless. When the last lease goes the source closes
after a grace period (a client that stops and re-requests keeps the camera
warm). A device runs in one mode at a time, its native source; any other
size, rate or pixel format is a derived source reading the native one, and
a request larger than the native mode re-opens the device in a mode that
covers both (the old source suspends, then derives from the new one).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Iterator

import zmq.asyncio

from mediabroker.capture.backend import RELAY_DRIVER, BackendSpec
from mediabroker.config import BrokerConfig
from mediabroker.devices import Device
from mediabroker.framing import CROP_AND_SCALE, Framing
from mediabroker.sources.index import SourceIndex
from mediabroker.sources.source import Source, SourceListener, SourcePlan
from mediabroker.sources.status import CaptureStatus, StatusInbox
from mediastream.errors import NotReadableError, OverconstrainedError
from mediastream.ring import RingFormat, VideoFormat

__all__ = ["Lease", "SourceManager", "open_produced"]

log = logging.getLogger(__name__)

RING_NAME_ATTEMPTS = 5
# Every reader of a source wakes at each of its frames, all at once: a user
# running many derived sources makes each frame's wake-up a crowd on few
# cores. A user's sources past its first run niced, so that when cores are
# short everybody's first stream is scheduled first (tests/system/test_load:
# a bystander's median latency under another user's 16 sources went from
# 1.2-3x its idle latency to 1.01-1.11x). Idle cores still run them fully.
FAIR_SHARE_SOURCES = 1
BEYOND_FAIR_SHARE_NICE = 19

PROGRESS_CHECKS_PER_STALL = 4  # progress checks within the least stall limit


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
        self.index = SourceIndex()
        self._idle_timers: dict[Source, asyncio.TimerHandle] = {}
        self._device_locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._status = StatusInbox(ctx, config.run_dir)
        self._close_tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        """Listen for capture processes' status (before any source starts)."""
        self._status.bind()

    def reconfigure(self, config: BrokerConfig) -> None:
        """SIGHUP: capture processes started from now on get ``config`` (its log level)."""
        self._config = config

    def __iter__(self) -> Iterator[Source]:
        return iter(self.index)

    def native_of(self, device: Device) -> Source | None:
        return self.index.native_of(device)

    async def acquire(
        self,
        device: Device,
        fmt: RingFormat,
        frame_rate: float,
        holder: str,
        opener: int | None = None,
        framing: Framing = CROP_AND_SCALE,
    ) -> Lease:
        """A lease for ``holder`` on a live source for ``device`` in this mode,
        shared when one is open. Sources it opens record ``opener`` (the
        uid that asked: quotas charge it for them while nobody holds them).
        ``framing`` (letterbox, normalize) is part of a derived source's identity.

        The device runs in one mode (its native source); any other size, rate
        or pixel format is a derived source reading the native one. Raises
        `NotReadableError`.
        """
        async with self._device_locks.setdefault(device.device_id, asyncio.Lock()):
            lease = await self._acquire_mode(device, fmt, frame_rate, holder, opener, framing)
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
        self,
        device: Device,
        fmt: RingFormat,
        frame_rate: float,
        holder: str,
        opener: int | None,
        framing: Framing,
    ) -> Lease:
        """A lease on the source for this mode; one acquire per device at a
        time, so two requests never re-open the same camera at once."""
        native = self.index.native_of(device)
        if native is not None and not self.index.in_use(native):
            if (native.format, native.frame_rate) != _fresh_mode(device, fmt, frame_rate):
                await self._close_family(native)  # an idle mode binds no request
                native = None
        if native is not None and not _derivable(native, fmt, frame_rate):
            native = await self._reconfigure(native, fmt, frame_rate, holder, opener)
        native = native or self._open_native(device, fmt, frame_rate, opener)
        source: Source | None = native
        if (native.format, native.frame_rate) != (fmt, frame_rate):
            source = self.index.live((device.device_id, fmt, frame_rate, framing))
            if source is None:
                backend = _derived_backend(native, framing)
                plan = SourcePlan(device, fmt, frame_rate, backend, native, framing)
                source = self._open(plan, opener)
        assert source is not None
        return self.lease(source, holder)

    async def _reconfigure(
        self, old: Source, fmt: RingFormat, frame_rate: float, holder: str, opener: int | None
    ) -> Source:
        """Re-open a camera in use in a mode that covers both what it runs and
        a larger request. The old source keeps its ring and its tracks: it
        becomes a derived source of the new one (its tracks see mute, then
        unmute)."""
        if not isinstance(fmt, VideoFormat) or not isinstance(old.format, VideoFormat):
            # Chosen while the microphone was idle; another track took it since.
            raise NotReadableError(
                f"{old.device.label} now runs as {_mode_name(old.format, old.frame_rate)} "
                "for another track; ask for that mode"
            )
        if self._listener.source_pinned(old, holder):
            raise _pinned_error(old, fmt, frame_rate)
        width, height, rate = old.device.native_mode_for(
            max(fmt.width, old.format.width),
            max(fmt.height, old.format.height),
            max(frame_rate, old.frame_rate),
        )
        mode = f"{width}x{height} {rate:g} fps"
        log.info("source %s: re-opening %s in the larger mode %s", old.id, old.device.label, mode)
        await old.suspend()  # frees the camera: only one process may hold it
        plan = SourcePlan(old.device, VideoFormat(width, height), rate, old.device.backend)
        # captureSeq goes on where the old mode left it: results keyed by it stay unique
        native = self._open(plan, opener, seq_base=old.newest_seq)
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
        framing = old.plan.framing
        backend = _derived_backend(native, framing)
        old.resume(SourcePlan(old.device, old.format, old.frame_rate, backend, native, framing))
        return native

    async def _close_family(self, source: Source) -> None:
        """Close an idle source and every source derived from it, now: the
        derived ones first, since they hold it."""
        for child in self.index.derived_from(source):
            await self._close_family(child)
        self._cancel_idle(source)
        await self._close(source)

    def _cancel_idle(self, source: Source) -> None:
        timer = self._idle_timers.pop(source, None)
        if timer is not None:
            timer.cancel()

    def _open_native(
        self, device: Device, fmt: RingFormat, frame_rate: float, opener: int | None
    ) -> Source:
        fmt, frame_rate = _fresh_mode(device, fmt, frame_rate)
        return self._open(SourcePlan(device, fmt, frame_rate, device.backend), opener)

    def _open(self, plan: SourcePlan, opener: int | None = None, seq_base: int = 0) -> Source:
        """Start a source for ``plan``. Its ring's name ends in a random tag:
        another user cannot create the segment first to make the start fail,
        and if a name is taken anyway another is tried."""
        source_id = f"{next(self._ids)}-{_mode_name(plan.format, plan.frame_rate)}"
        for _ in range(RING_NAME_ATTEMPTS):
            tag = secrets.token_hex(6)
            source = Source(
                source_id, plan, self._config, self._listener, self._status.endpoint, tag
            )
            source.opener, source.nice = opener, self._nice_for(opener)
            if plan.parent is not None:  # a derived source keeps its parent open
                source.parent_lease = self.lease(plan.parent, f"source:{source_id}")
            try:
                source.start(seq_base)
            except BaseException as exc:
                if source.parent_lease is not None:
                    source.parent_lease.release()
                if not isinstance(exc, FileExistsError):
                    raise
                log.warning("%s exists and is not ours: trying another name", source.ring_name)
                continue
            self.index.add(source)
            return source
        raise NotReadableError(
            f"{RING_NAME_ATTEMPTS} ring names for {source_id} were taken in "
            f"{self._config.shm_dir}: another user is creating them; tell the administrator"
        )

    def _nice_for(self, opener: int | None) -> int:
        if opener is None:
            return 0
        opened = self.index.opened_by(opener)
        return BEYOND_FAIR_SHARE_NICE if opened >= FAIR_SHARE_SOURCES else 0

    def family(self, source: Source) -> list[Source]:
        return self.index.family(source)

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
        source.readers.drop_holds(lease.holder)
        if source.leases:
            return
        delay = 0.0 if source.state.finished else self._config.idle_close_s
        loop = asyncio.get_running_loop()
        self._idle_timers[source] = loop.call_later(delay, self._close_idle, source)

    def _close_idle(self, source: Source) -> None:
        self._idle_timers.pop(source, None)
        if not source.leases:
            task = asyncio.create_task(self._close(source))
            self._close_tasks.add(task)
            task.add_done_callback(self._close_tasks.discard)

    async def _close(self, source: Source) -> None:
        self.index.remove(source)
        await source.close()
        if source.parent_lease is not None:
            source.parent_lease.release()

    async def watch_progress(self) -> None:
        """Check every source's progress, four times within the least stall
        limit: twice a second by default (runs until cancelled)."""
        while True:
            await asyncio.sleep(self._config.stall_s / PROGRESS_CHECKS_PER_STALL)
            now = time.monotonic()
            for source in self.index:
                source.check_progress(now)

    async def serve_status(self) -> None:
        """Forward capture processes' status messages to their sources (runs
        until cancelled)."""
        await self._status.serve(self._deliver)

    def _deliver(self, status: CaptureStatus) -> None:
        source = self.index.by_id(status.source_id)
        if source is not None:  # else it closed while the message was on its way
            source.on_status(status)

    async def close_all(self) -> None:
        """Close every source (stopping its capture process, unlinking its
        ring) and the status inbox."""
        for timer in self._idle_timers.values():
            timer.cancel()
        sources = self.index.clear()
        await asyncio.gather(*(s.close() for s in sources), *self._close_tasks)
        self._status.close()


def open_produced(sources: SourceManager, plan: SourcePlan, holder: str, opener: int) -> Lease:
    """A lease for ``holder`` on a new source for a process's generator
    (`mediabroker.daemon.generators`): opened at once, never shared with an
    earlier one, live before its first frame (its relay says so)."""
    return sources.lease(sources._open(plan, opener), holder)


def _derivable(native: Source, fmt: RingFormat, frame_rate: float) -> bool:
    """Whether ``native`` can deliver this mode by crop, scale and decimation
    (never up); audio only as the microphone runs (there is no derived audio)."""
    have = native.format
    if not isinstance(fmt, VideoFormat) or not isinstance(have, VideoFormat):
        return fmt == have
    return fmt.width <= have.width and fmt.height <= have.height and frame_rate <= native.frame_rate


def _fresh_mode(device: Device, fmt: RingFormat, frame_rate: float) -> tuple[RingFormat, float]:
    """The mode an idle device opens in for a request: for a camera the
    smallest native mode that covers it, in bgr24 (other pixel formats are
    derived); a microphone as asked."""
    if device.backend.driver == RELAY_DRIVER:  # only its generator opens it (daemon.generators)
        raise NotReadableError(f"{device.label} has closed")
    if not isinstance(fmt, VideoFormat):
        return fmt, frame_rate
    width, height, rate = device.native_mode_for(fmt.width, fmt.height, frame_rate)
    return VideoFormat(width, height), rate


def _pinned_error(old: Source, fmt: VideoFormat, frame_rate: float) -> OverconstrainedError:
    """A larger request while a track requires the camera's own pixels:
    re-opening would resize that track's frames under it."""
    assert isinstance(old.format, VideoFormat)
    if fmt.width > old.format.width:
        name = "width"
    else:
        name = "height" if fmt.height > old.format.height else "frameRate"
    return OverconstrainedError(
        name,
        f"{old.device.label} runs as {_mode_name(old.format, old.frame_rate)} for a track "
        "that requires resizeMode 'none'; ask for at most that mode",
    )


def _derived_backend(parent: Source, framing: Framing) -> BackendSpec:
    """The backend of a source derived from ``parent``: it reads the parent's
    ring, woken by its doorbell, and frames it so (`mediabroker.capture.derived`)."""
    params = {"ring": parent.ring_name, "daemon_pid": os.getpid(), **framing.to_params()}
    if parent.plan.produced:  # a generator's: it may be silent, and is live all the same
        params["ready_at_start"] = True
    return BackendSpec("derived", params)


def _mode_name(fmt: RingFormat, frame_rate: float) -> str:
    if isinstance(fmt, VideoFormat):
        return f"video-{fmt.width}x{fmt.height}-{fmt.pixel_format}-{frame_rate:g}fps"
    return f"audio-{fmt.sample_rate}hz-{fmt.channels}ch"
