"""Video track generators, daemon side: createGenerator, muteGenerator,
closeGenerator, publishDevice (our extension; `mediastream.generator`).

Design note. A generator is a source whose capture backend is a relay
(`mediabroker.capture.relay`) from a staging ring the writer made. The
daemon opens that file read-only after checking it is the asker's own
regular file of exactly the declared format's size with a header that
says so (a writer that lies about its format is refused here), then never
maps it: the relay reads it with system calls only. The real ring is the
daemon's, in the format it validated (bgr24 at the declared size, so every
derived size, rate, pixel format and letterbox works as for a camera), so
nothing the writer can write reaches a reader's idea of the format.

The generator holds its source with a lease of its own (holder
``generator:<id>``), so the source never closes on idle while the
generator lives; it is charged to its user's quotas as a source like any
other, and a session may own ``[generators] per_session`` of them. When
the owner closes it or its session ends however it ends (connection
closed, process killed), the source ends: every track of it fires
``ended``, and a published device disappears (``devicechange``).

Mute has two reasons (`Source.set_quiet`): "producer" (``gen.muted``) and
"silent" (no frame for ``[generators] silence_s``; unmuted at the next
frame). A generator's source is never killed by the stall watch: its
writer paces it. ``watched``/``unwatched`` notices tell the owner when
the last track on it (any process's, on any derived size) stops and when
one comes back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mediabroker.capture.backend import RELAY_DRIVER, BackendSpec
from mediabroker.config import KEY_OF_FIELD, BrokerConfig
from mediabroker.daemon.access import describe_uid, log_refusal
from mediabroker.daemon.control import Handler
from mediabroker.daemon.device_watch import DeviceWatch
from mediabroker.daemon.ops import MediaOps
from mediabroker.daemon.quotas import SourceQuota
from mediabroker.daemon.sessions import Session, SessionTable
from mediabroker.daemon.tracks import TrackTable
from mediabroker.devices import Device
from mediabroker.devices.device import stable_id, video_capabilities
from mediabroker.sources import Lease, Source, SourceManager
from mediabroker.sources.manager import open_produced
from mediabroker.sources.rings import ring_slots
from mediabroker.sources.source import SourcePlan
from mediastream.errors import AbortError, InvalidStateError, NotAllowedError, NotReadableError
from mediastream.generator import STAGING_SLOTS, check_generator_init
from mediastream.ring import (
    HEADER,
    HEADER_BYTES,
    LAYOUT_VERSION,
    MAGIC,
    VideoFormat,
    check_segment_name,
    ring_bytes,
)

__all__ = ["Generator", "Generators", "open_staging"]

log = logging.getLogger(__name__)

MAX_PROCESS_NAME_CHARS = 40  # of the label's "(from NAME, USER)"
SILENCE_CHECKS = 4  # silence checks within [generators] silence_s


@dataclass(eq=False)
class Generator:
    id: str
    session: Session
    lease: Lease  # holder generator:<id>: the source lives while it does
    device: Device
    published: bool = False
    watched: bool = True
    last_seq: int = 0
    last_move: float = 0.0  # time.monotonic() of its last new frame

    @property
    def source(self) -> Source:
        return self.lease.source


def open_staging(config: BrokerConfig, name: str, uid: int, fmt: VideoFormat) -> int:
    """Open user ``uid``'s staging ring ``name`` read-only; raises
    `NotReadableError` unless it is that user's regular file, named under
    our prefix, of exactly the size ``fmt`` and `STAGING_SLOTS` make, with
    a header that says that format (never follows a link, never blocks)."""
    start = config.shm_prefix + "gen."
    if not name.startswith(start):
        raise NotReadableError(f"{name!r} is not a staging ring name (it starts {start!r})")
    path = config.shm_dir / check_segment_name(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise NotReadableError(f"cannot open the staging ring {path}: {exc.strerror}") from exc
    try:
        _check_staging(fd, path.name, uid, fmt)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_staging(fd: int, name: str, uid: int, fmt: VideoFormat) -> None:
    info, size = os.fstat(fd), ring_bytes(fmt, STAGING_SLOTS)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_size != size:
        raise NotReadableError(
            f"{name} is not a staging ring of uid {uid} for {fmt.width}x{fmt.height} "
            f"{fmt.pixel_format}: it must be that user's regular file of {size} bytes"
        )
    header = _parse_header(os.pread(fd, HEADER_BYTES, 0))
    said = (header["width"], header["height"], header["pixel_format"], header["slot_count"])
    if (
        header["magic"] != MAGIC
        or header["version"] != LAYOUT_VERSION
        or said
        != (
            fmt.width,
            fmt.height,
            fmt.pixel_format,
            STAGING_SLOTS,
        )
    ):
        raise NotReadableError(
            f"the staging ring {name} says {said[0]}x{said[1]} {said[2]!r} in {said[3]} slots, "
            f"not the {fmt.width}x{fmt.height} {fmt.pixel_format} in {STAGING_SLOTS} asked for"
        )


def _parse_header(data: bytes) -> dict[str, Any]:
    import numpy as np

    if len(data) < HEADER.itemsize:
        return {
            "magic": 0,
            "version": 0,
            "width": 0,
            "height": 0,
            "pixel_format": "",
            "slot_count": 0,
        }
    h = np.frombuffer(data[: HEADER.itemsize], HEADER)[0]
    fields = {k: int(h[k]) for k in ("magic", "version", "width", "height", "slot_count")}
    return {
        **fields,
        "pixel_format": bytes(h["pixel_format"]).rstrip(b"\0").decode("ascii", "replace"),
    }


def generator_device(generator_id: str, fmt: VideoFormat, frame_rate: float, label: str) -> Device:
    """The device a generator's source runs: one native mode (its own, in
    bgr24), any smaller size, lower rate or other pixel format derived."""
    device_id = stable_id("generator", generator_id)
    group_id = stable_id("generator", "group", generator_id)
    capabilities = video_capabilities(device_id, group_id, fmt.width, fmt.height, frame_rate)
    defaults = {
        "width": fmt.width,
        "height": fmt.height,
        "frameRate": frame_rate,
        "resizeMode": "none",
        "pixelFormat": fmt.pixel_format,
    }
    params = {"daemon_pid": os.getpid(), "pixel_format": fmt.pixel_format, "slots": STAGING_SLOTS}
    backend = BackendSpec(RELAY_DRIVER, params)
    mode = (fmt.width, fmt.height, frame_rate)
    return Device(
        device_id, "videoinput", label, group_id, backend, capabilities, defaults, (mode,)
    )


def produced_label(label: str, session: Session) -> str:
    """``"Blurred camera (from worker.py, alice)"``: who made it shows in
    every label, so no process can pose as a camera. The user is the
    kernel's (SO_PEERCRED); the process name is the client's own."""
    name = "".join(c for c in session.name if c.isprintable())[:MAX_PROCESS_NAME_CHARS]
    user = describe_uid(session.peer.uid).split(" ")[-1].strip("()")
    return f"{label} (from {name or 'a process'}, {user})"


class Generators:
    """The generators of every session, and their ops."""

    def __init__(
        self,
        config: BrokerConfig,
        media: MediaOps,
        sources: SourceManager,
        tracks: TrackTable,
        devices: DeviceWatch,
        sessions: SessionTable,
        quota: SourceQuota,
    ) -> None:
        self._config = config
        self._media = media
        self._sources = sources
        self._tracks = tracks
        self._devices = devices
        self._sessions = sessions
        self._quota = quota
        self._by_id: dict[str, Generator] = {}
        tracks.watchers.append(self._source_changed)

    def table(self) -> dict[str, Handler]:
        return {
            "createGenerator": self.create,
            "muteGenerator": self.mute,
            "closeGenerator": self.close_op,
            "publishDevice": self.publish,
        }

    def __len__(self) -> int:
        return len(self._by_id)

    # -- ops ---------------------------------------------------------------

    async def create(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        init = {k: args[k] for k in ("width", "height", "frameRate", "pixelFormat", "label")}
        fmt, frame_rate, label = check_generator_init(init)
        self._check_room(session)
        if args.get("publish"):
            self._check_publisher(session)
        generator_id = str(uuid.uuid4())
        device = generator_device(generator_id, fmt, frame_rate, produced_label(label, session))
        staging = open_staging(self._config, args["staging"], session.peer.uid, fmt)
        try:
            lease = await self._open_source(session, generator_id, device, staging, frame_rate)
        finally:
            os.close(staging)  # the source has its own copy
        generator = Generator(generator_id, session, lease, device, last_move=time.monotonic())
        self._by_id[generator_id] = generator
        try:
            track = await self._media.track_on(session, device, {"pixelFormat": fmt.pixel_format})
            if self._sessions.get(session.identity) is not session:
                raise AbortError("the session ended while its generator started")
        except BaseException:
            self.close(generator, "its generator could not start")
            raise
        if args.get("publish"):
            self._publish(generator)
        log.info("%r created generator %s: %s", session, generator_id, device.label)
        device_id = device.device_id if generator.published else None
        return {"generatorId": generator_id, "track": track.to_wire(), "deviceId": device_id}

    async def _open_source(
        self, session: Session, generator_id: str, device: Device, staging: int, rate: float
    ) -> Lease:
        fmt = VideoFormat(device.defaults["width"], device.defaults["height"])
        plan = SourcePlan(device, fmt, rate, device.backend)
        size = ring_bytes(fmt, ring_slots(self._config, fmt))
        with self._quota.reserve(session, plan.key, size):
            holder = f"generator:{generator_id}"
            lease = open_produced(self._sources, plan, holder, session.peer.uid)
        lease.source.readers.set_staging(staging)
        try:
            await asyncio.wait_for(
                asyncio.shield(lease.source.started), self._config.source_start_timeout_s
            )
        except BaseException as exc:
            lease.source.end("its generator could not start")
            lease.release()
            if isinstance(exc, TimeoutError):
                raise NotReadableError(f"{device.label}: the relay did not start") from exc
            raise
        return lease

    async def mute(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        generator = self._own(session, args["generatorId"])
        source, muted = generator.source, bool(args["muted"])
        if not muted:  # the silence clock starts afresh: the writer was told to hold
            generator.last_move = time.monotonic()
            source.set_quiet("silent", False)
        source.set_quiet("producer", muted)
        return {}

    async def close_op(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        generator = self._by_id.get(str(args["generatorId"]))
        if generator is not None and generator.session is session:
            self.close(generator, "its generator was closed")
        return {}  # closing a closed generator is a no-op, as close() is

    async def publish(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        generator = self._own(session, args["generatorId"])
        self._check_publisher(session)
        self._publish(generator)
        return {"deviceId": generator.device.device_id}

    # -- lifecycle ---------------------------------------------------------

    def close(self, generator: Generator, reason: str) -> None:
        """End ``generator``'s source (its tracks fire ``ended``) and withdraw
        its device. Idempotent."""
        if self._by_id.pop(generator.id, None) is None:
            return
        generator.source.end(reason)  # first: its tracks end for this reason
        if generator.published:
            self._devices.unpublish(generator.device.device_id)
        generator.lease.release()
        log.info("generator %s closed: %s", generator.id, reason)

    def drop_session(self, session: Session) -> None:
        """Close every generator of a session that went away."""
        for generator in list(self._by_id.values()):
            if generator.session is session:
                self.close(generator, "the process that wrote it is gone")

    async def watch_silence(self) -> None:
        """Mute generators that wrote nothing for ``silence_s``, unmute them at
        their next frame (runs until cancelled)."""
        silence_s = self._config.generator_silence_s
        while True:
            await asyncio.sleep(silence_s / SILENCE_CHECKS)
            now = time.monotonic()
            for generator in list(self._by_id.values()):
                self._check_silence(generator, now, silence_s)

    def _check_silence(self, generator: Generator, now: float, silence_s: float) -> None:
        if generator.source.state.finished:  # its relay failed for good
            self._tracks.send_notice(generator.session, f"generator/{generator.id}", "ended")
            self.close(generator, "its source ended")
            return
        seq = generator.source.newest_seq
        if seq != generator.last_seq:
            generator.last_seq, generator.last_move = seq, now
            generator.source.set_quiet("silent", False)
        elif now - generator.last_move >= silence_s:
            generator.source.set_quiet("silent", True)

    def _source_changed(self, source: Source) -> None:
        """A track came or went on ``source``: tell the owner of the
        generator it belongs to when it became (un)watched."""
        for generator in self._by_id.values():
            if generator.source in (source, source.parent):
                watched = bool(self._tracks.of_source(generator.source))
                if watched != generator.watched:
                    generator.watched = watched
                    event = "watched" if watched else "unwatched"
                    topic = f"generator/{generator.id}"
                    self._tracks.send_notice(generator.session, topic, event)

    # -- checks ------------------------------------------------------------

    def _own(self, session: Session, generator_id: str) -> Generator:
        generator = self._by_id.get(generator_id)
        if generator is None or generator.session is not session:
            raise InvalidStateError(f"generator {generator_id!r} is not open in this session")
        return generator

    def _check_room(self, session: Session) -> None:
        owned = sum(1 for g in self._by_id.values() if g.session is session)
        limit = self._config.generators_per_session
        if owned >= limit:
            key = KEY_OF_FIELD["generators_per_session"]
            log_refusal(session.peer, "a generator", f"{owned} generators ({key})")
            raise NotReadableError(
                f"this process has {owned} generators, the limit ({key} = {limit} in "
                f"{self._config.config_path or 'the defaults'}); close one first"
            )

    def _check_publisher(self, session: Session) -> None:
        config, peer = self._config, session.peer
        if peer.uid in (0, os.getuid()) or peer.uid in config.publish_users:
            return
        if peer.groups & set(config.publish_groups):
            return
        users, groups = KEY_OF_FIELD["publish_users"], KEY_OF_FIELD["publish_groups"]
        log_refusal(peer, "publishing a device", f"not in {users} or {groups}")
        raise NotAllowedError(
            f"user {describe_uid(peer.uid)} may not publish devices: only root, the daemon's "
            f"user and those in {users} or {groups} (in "
            f"{config.config_path or 'the defaults'}) may; ask the administrator"
        )

    def _publish(self, generator: Generator) -> None:
        if not generator.published:
            generator.published = True
            self._devices.publish(generator.device)

    def __repr__(self) -> str:
        return f"<Generators {len(self._by_id)}>"
