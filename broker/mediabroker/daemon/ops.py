"""The control ops, in three tables: media (the spec's requests), shared
streams (our extension) and admin (stats, runtime fake devices).

Each handler takes the session and the op's arguments, already checked
against `mediastream.wire.OPS`, and returns the reply's fields. Errors the
client should see are `MediaStreamError`s; `ControlServer` answers them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mediabroker.config import BrokerConfig
from mediabroker.constraint_parsing import parse_gum_constraints, parse_track_constraints
from mediabroker.daemon.control import ControlServer, Handler
from mediabroker.daemon.device_watch import DeviceWatch
from mediabroker.daemon.names import check_name
from mediabroker.daemon.quotas import SourceQuota
from mediabroker.daemon.sessions import Session, SessionTable
from mediabroker.daemon.stats import stats_reply
from mediabroker.daemon.tracks import TrackRecord, TrackTable, holder_name, new_track_id
from mediabroker.devices import Device
from mediabroker.framing import framing_for
from mediabroker.selection import (
    choose_device,
    ring_format,
    select_for_device,
    settings_for_source,
    settle_settings,
)
from mediabroker.sources import Lease, SourceManager
from mediabroker.sources.rates import RateBook
from mediabroker.sources.reader_files import open_doorbell, open_hold_table
from mediabroker.sources.rings import ring_slots
from mediastream.errors import (
    AbortError,
    ConstraintTypeError,
    InvalidStateError,
    NotAllowedError,
    NotFoundError,
    OverconstrainedError,
)
from mediastream.lint import unknown_constraints
from mediastream.ring import ring_bytes

__all__ = ["AdminOps", "MediaOps", "StreamOps"]

log = logging.getLogger(__name__)

MAX_NAMES_LOGGED = 32  # unknown constraint names remembered per session
MAX_LABEL_CHARS = 100


class MediaOps:
    """enumerateDevices, getUserMedia, applyConstraints, stopTrack, cloneTrack,
    holdFrames and registerDoorbell (ours: `mediabroker.sources.reader_files`)."""

    def __init__(
        self,
        devices: DeviceWatch,
        sources: SourceManager,
        tracks: TrackTable,
        sessions: SessionTable,
        quota: SourceQuota,
    ) -> None:
        self._devices = devices
        self._sources = sources
        self._tracks = tracks
        self._sessions = sessions
        self._quota = quota

    def table(self) -> dict[str, Handler]:
        return {
            "enumerateDevices": self.enumerate_devices,
            "getUserMedia": self.get_user_media,
            "applyConstraints": self.apply_constraints,
            "stopTrack": self.stop_track,
            "cloneTrack": self.clone_track,
            "holdFrames": self.hold_frames,
            "registerDoorbell": self.register_doorbell,
        }

    async def enumerate_devices(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        return {"devices": [d.to_wire() for d in self._devices.devices]}

    async def get_user_media(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        _log_unknown_names(session, args["constraints"])
        requested = parse_gum_constraints(args["constraints"])
        self._tracks.check_track_room(session, len(requested))
        created: list[TrackRecord] = []
        try:
            for kind, constraint_set in requested.items():
                device, settings = choose_device(
                    self._devices.devices, kind, constraint_set, self._running
                )
                track_id = new_track_id()
                lease, settings = await self._lease_for(
                    session, track_id, device, settings, constraint_set
                )
                created.append(self._tracks.add(track_id, session, lease, settings, constraint_set))
                # The device start was awaited: the session may have ended meanwhile
                # (client killed, bye, hello again), and nobody would release the track.
                if self._sessions.get(session.identity) is not session:
                    raise AbortError("the session ended while getUserMedia waited for the device")
        except BaseException:
            for track in created:
                self._tracks.release(track)
            raise
        return {"tracks": [t.to_wire() for t in created]}

    async def track_on(
        self, session: Session, device: Device, constraints: dict[str, Any]
    ) -> TrackRecord:
        """A new video track of ``session`` on ``device`` as ``constraints``
        ask, whether the device is listed or not (a generator's own track:
        `mediabroker.daemon.generators`). Raises as getUserMedia does."""
        constraint_set = parse_track_constraints(device.media_kind, constraints)
        self._tracks.check_track_room(session, 1)
        settings, _ = select_for_device(device, constraint_set, None)
        track_id = new_track_id()
        lease, settings = await self._lease_for(session, track_id, device, settings, constraint_set)
        return self._tracks.add(track_id, session, lease, settings, constraint_set)

    async def apply_constraints(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """The spec's ApplyConstraints: all or nothing. A new size, rate or
        format moves the track to the source that delivers it."""
        track = self._tracks.of_session(session, args["trackId"])
        if track is None:
            return {}  # an ended track: the spec resolves and changes nothing
        device = track.source.device
        _log_unknown_names(session, args["constraints"])
        constraint_set = parse_track_constraints(track.kind, args["constraints"])
        settings, _ = select_for_device(device, constraint_set, self._running_for(track))
        lease, settings = await self._lease_for(
            session, track.id, device, settings, constraint_set, moving=track
        )
        if not self._tracks.is_live(track):  # stopped or ended while we waited
            lease.release()
            return {}
        old, track.lease = track.lease, lease
        self._tracks.sync_doorbell(session)
        old.release()
        track.settings, track.constraints = settings, constraint_set
        return {"track": track.to_wire()}

    async def stop_track(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        track = self._tracks.of_session(session, args["trackId"])
        if track is not None:
            self._tracks.release(track)
        return {}  # stopping an ended or unknown track is a no-op, as stop() is

    async def clone_track(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        original = self._tracks.of_session(session, args["trackId"])
        if original is None:
            raise InvalidStateError(f"track {args['trackId']!r} is not live in this session")
        self._tracks.check_track_room(session, 1)
        return {"track": self._tracks.mirror_track(session, original).to_wire()}

    async def register_doorbell(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """The process's doorbell FIFO (`mediastream.wakeups`): from now on
        every source its tracks read rings it after each frame."""
        config = self._quota.config
        fd = open_doorbell(config.shm_dir, config.shm_prefix, args["fifo"], session.peer.uid)
        if self._sessions.get(session.identity) is not session:
            os.close(fd)
            raise InvalidStateError("the session ended while its doorbell was opened")
        self._tracks.set_doorbell(session, fd)
        return {}

    async def hold_frames(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """Register the reader's hold table for a video track's ring; replies
        with how many frames it may hold at once."""
        track = self._tracks.of_session(session, args["trackId"])
        if track is None or track.kind != "video":
            raise InvalidStateError(f"track {args['trackId']!r} is not a live video track here")
        source, holder, config = track.source, track.lease.holder, self._quota.config
        table = open_hold_table(config.shm_dir, source.ring_name, args["table"], session.peer.uid)
        limit = await source.readers.grant(holder, table, config.held_frames, source.capturing)
        if not self._tracks.is_live(track) or track.source is not source:
            source.readers.drop_holds(holder)  # stopped or moved while the writer took it
            raise InvalidStateError(f"track {track.id} left its source while it asked to hold")
        return {"limit": limit}

    async def _lease_for(
        self,
        session: Session,
        track_id: str,
        device: Device,
        settings: dict[str, Any],
        constraints: dict[str, Any],
        moving: TrackRecord | None = None,
    ) -> tuple[Lease, dict[str, Any]]:
        """A lease for the track on the source that delivers ``settings``, and
        the settings with the resizeMode it gives. ``moving`` is the track
        when it leaves its source for this one. Raises `OverconstrainedError`,
        `NotReadableError` (also for a user out of sources or shared memory)."""
        fmt, frame_rate = ring_format(device, settings)
        framing = framing_for(settings)  # letterbox, normalize: a source of their own
        size = ring_bytes(fmt, ring_slots(self._quota.config, fmt))
        holder, uid = holder_name(track_id), session.peer.uid
        key = (device.device_id, fmt, frame_rate, framing)
        with self._quota.reserve(session, key, size, moving):
            lease = await self._sources.acquire(device, fmt, frame_rate, holder, uid, framing)
        try:
            return lease, settle_settings(settings, constraints, lease.source)
        except OverconstrainedError:
            lease.release()
            raise

    def _running(self, device: Device) -> dict[str, Any] | None:
        """The mode a microphone in use runs in (it cannot change it for one
        more track); None for an idle one (also while it lingers in its idle
        grace with no track: the next request may pick any mode), and for
        cameras, which re-open in a mode that covers every track."""
        native = self._sources.native_of(device)
        if native is None or not native.leases or device.kind == "videoinput":
            return None
        return settings_for_source(native)

    def _running_for(self, track: TrackRecord) -> dict[str, Any] | None:
        """The device's mode as ``track`` may change it: a track alone on its
        device may pick any mode, since nobody else listens."""
        native = self._sources.native_of(track.source.device)
        if native is None or native.device.kind == "videoinput":
            return None
        users = {t.id for t in self._tracks.of_source(native)}
        return None if users == {track.id} else settings_for_source(native)


class StreamOps:
    """publishStream, unpublishStream, attachStream (our extension)."""

    def __init__(self, tracks: TrackTable) -> None:
        self._tracks = tracks

    def table(self) -> dict[str, Handler]:
        return {
            "publishStream": self.publish_stream,
            "unpublishStream": self.unpublish_stream,
            "attachStream": self.attach_stream,
        }

    async def publish_stream(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        ids = args["trackIds"]
        if not all(isinstance(i, str) for i in ids):
            raise ConstraintTypeError("trackIds must be a list of track ids")
        tracks = [t for i in ids if (t := self._tracks.of_session(session, i)) is not None]
        self._tracks.streams.publish(session, _stream_name(args["name"]), tracks)
        return {}

    async def unpublish_stream(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._tracks.streams.unpublish(session, args["name"])
        return {}

    async def attach_stream(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        attachment, mirrors = self._tracks.streams.attach(session, _stream_name(args["name"]))
        return {"attachment": attachment, "tracks": [t.to_wire() for t in mirrors]}


class AdminOps:
    """stats; addFakeDevice and removeFakeDevice (root or the daemon's user only)."""

    def __init__(
        self,
        config: BrokerConfig,
        control: ControlServer,
        devices: DeviceWatch,
        sources: SourceManager,
        sessions: SessionTable,
        rates: RateBook,
    ) -> None:
        self._config = config
        self._control = control
        self._devices = devices
        self._sources = sources
        self._sessions = sessions
        self._rates = rates

    def table(self) -> dict[str, Handler]:
        return {
            "stats": self.stats,
            "addFakeDevice": self.add_fake_device,
            "removeFakeDevice": self.remove_fake_device,
        }

    async def stats(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        counters = {**self._control.counters, **self._control.server.counters}
        return stats_reply(
            session, self._sessions, self._sources, counters, self._config, self._rates
        )

    async def add_fake_device(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        _check_operator(session, "add fake devices")
        device = self._devices.catalog.fakes.add(args["kind"], args["label"][:MAX_LABEL_CHARS])
        self._devices.apply([*self._devices.devices, device])
        return {"deviceId": device.device_id}

    async def remove_fake_device(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        _check_operator(session, "remove fake devices")
        device = self._devices.find(args["deviceId"])
        if device is None:
            raise NotFoundError(f"no device has the id {args['deviceId']!r}")
        self._devices.catalog.fakes.remove(device)
        self._devices.apply([d for d in self._devices.devices if d is not device])
        return {}


def _log_unknown_names(session: Session, constraints: Any) -> None:
    """Constraint names nothing supports are ignored, as the spec says; each
    is logged once per client (at debug: a misspelt ``fps`` silently does
    nothing, and `mediastream.lint.unknown_constraints` finds it ahead)."""
    if not isinstance(constraints, dict):
        return
    for name in unknown_constraints(constraints):
        if name not in session.unknown_names and len(session.unknown_names) < MAX_NAMES_LOGGED:
            session.unknown_names.add(name)
            log.debug("%r asked for the unknown constraint %r: ignored", session, name[:100])


def _check_operator(session: Session, what: str) -> None:
    if session.peer.uid not in (0, os.getuid()):
        raise NotAllowedError(
            f"only root or the daemon's own user (uid {os.getuid()}) may {what}; "
            f"you are uid {session.peer.uid}"
        )


def _stream_name(name: str) -> str:
    return check_name(name, "a stream name")  # result channels follow the same rule
