"""The daemon's main process: control requests, sessions, tracks and events.

Design note. One asyncio loop owns three sockets: a ROUTER for requests, a
PUB for events, and (in `SourceManager`) a PULL for capture processes'
status. Each request runs as a task of its own so that a slow device start
never stalls other clients; a client's own requests are serial because the
client waits for each reply. Nothing a client sends can raise out of the
loop: undecodable or invalid messages are counted and answered with an
error, and handler errors travel back as DOMException names.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from mediabroker.config import BrokerConfig
from mediabroker.constraints import parse_gum_constraints, parse_track_constraints
from mediabroker.daemon.access import check_peer, secure_sockets
from mediabroker.daemon.sessions import Session, SessionTable, parse_peer_address
from mediabroker.daemon.shared_streams import StreamRegistry
from mediabroker.daemon.stats import process_figures, source_figures
from mediabroker.daemon.systemd import SystemdNotifier
from mediabroker.devices.catalog import Device, RuntimeFakes, discover_devices
from mediabroker.selection import (
    TrackRecord,
    choose_device,
    ring_format,
    select_for_device,
    settings_for_source,
    settle_settings,
)
from mediabroker.sources.manager import Source, SourceManager, sweep_stale_rings
from mediastream import wire
from mediastream.errors import (
    AbortError,
    InvalidStateError,
    MediaStreamError,
    NotAllowedError,
    NotFoundError,
    NotReadableError,
    OverconstrainedError,
    ProtocolError,
)
from mediastream.paths import control_endpoint, events_endpoint

__all__ = ["Broker"]

log = logging.getLogger(__name__)

# libzmq drops (and disconnects) anything larger before we see it; messages
# between the wire limit and this one are decoded, refused and counted.
TRANSPORT_MAX_BYTES = 4 * wire.MAX_MESSAGE_BYTES
SHUTDOWN_LINGER_MS = 1000
MAX_TRACKS_PER_SESSION = 256  # keeps every reply about a session within the wire's limits

Handler = Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any]]]


class Broker:
    """Serves clients until ``stop`` is set by `run`'s caller."""

    def __init__(self, config: BrokerConfig, devices: list[Device] | None = None) -> None:
        self.config = config
        self.fakes = RuntimeFakes()
        self.devices = devices if devices is not None else discover_devices(config)
        self.sessions = SessionTable(lambda s: self._release_session(s, "its process exited"))
        self.tracks: dict[str, TrackRecord] = {}
        self.streams = StreamRegistry(self)
        self.counters = {"requests": 0, "malformed": 0, "errors": 0}
        self._ctx = zmq.asyncio.Context()
        self._notifier = SystemdNotifier()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Handler] = {
            "bye": self._bye,
            "enumerateDevices": self._enumerate_devices,
            "getUserMedia": self._get_user_media,
            "stopTrack": self._stop_track,
            "cloneTrack": self._clone_track,
            "applyConstraints": self._apply_constraints,
            "stats": self._stats,
            "addFakeDevice": self._add_fake_device,
            "removeFakeDevice": self._remove_fake_device,
            "publishStream": self._publish_stream,
            "unpublishStream": self._unpublish_stream,
            "attachStream": self._attach_stream,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Bind, tell systemd READY=1, serve until ``stop`` is set, then end
        every track, stop every capture process and unlink every ring."""
        self._prepare_run_dir()
        self._control = self._bind(
            zmq.ROUTER, control_endpoint(self.config.run_dir), TRANSPORT_MAX_BYTES
        )
        self._events = self._bind(zmq.PUB, events_endpoint(self.config.run_dir))
        self.sources = SourceManager(self.config, self, self._ctx)
        secure_sockets(self.config)  # mode and group of the sockets just bound
        loops = [
            self._serve_control(),
            self.sources.serve_status(),
            self.sources.watch_progress(),
            self._reap_sessions(),
            self._heartbeat(),
            self._watch_devices(),
        ]
        workers = [asyncio.create_task(c) for c in loops]
        log.info("serving %d device(s) on %s", len(self.devices), self.config.run_dir)
        self._notifier.ready()
        try:
            await stop.wait()
        finally:
            await self._shutdown(workers)

    def _prepare_run_dir(self) -> None:
        self.config.run_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        sweep_stale_rings(self.config)

    def _bind(self, kind: int, endpoint: str, max_bytes: int = -1) -> zmq.asyncio.Socket:
        socket = self._ctx.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        # Before bind: the listener copies the options then, for every connection.
        socket.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        socket.bind(endpoint)
        return socket

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        log.info("stopping: ending %d track(s)", len(self.tracks))
        self._notifier.stopping()
        for worker in [*workers, *self._tasks]:
            worker.cancel()
        await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
        for track in list(self.tracks.values()):
            self._end_track(track, "the daemon is stopping")
        self._publish("broker", "stopping")
        await self.sources.close_all()
        # Let the last notices (every track's "ended") reach connected clients.
        self._control.close(linger=SHUTDOWN_LINGER_MS)
        self._events.close(linger=SHUTDOWN_LINGER_MS)
        self._ctx.term()
        for name in ("control", "events", "capture-status"):
            (self.config.run_dir / name).unlink(missing_ok=True)
        self._notifier.close()
        log.info("stopped")

    # -- requests --------------------------------------------------------

    async def _serve_control(self) -> None:
        while True:
            frames = await self._control.recv_multipart(copy=False)
            self._dispatch(frames)
            # A receive that finds a message waiting does not yield: under a
            # flood, requests' tasks (other clients' answers) and the heartbeat
            # would wait until the socket ran dry.
            await asyncio.sleep(0)

    def _dispatch(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            self.counters["malformed"] += 1
            return
        identity, payload = frames[0].bytes, frames[1]
        try:
            request = wire.decode_request(payload.bytes)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            self._reply_error(identity, wire.request_id_of(payload.bytes), exc)
            return
        self.counters["requests"] += 1
        session = self.sessions.get(identity)
        if session is not None:
            session.last_seen = time.monotonic()
        if request.op == "heartbeat":
            if session is not None and "delivered" in request.args:
                session.delivered = request.args["delivered"]
                session.discarded = request.args.get("discarded", 0)
            return
        task = asyncio.create_task(self._answer(identity, payload, session, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, identity: bytes, payload: zmq.Frame, session: Session | None, request: wire.Request
    ) -> None:
        try:
            if request.op == "hello":
                result = self._hello(identity, payload, request.args)
            elif session is None:
                raise InvalidStateError(f"{request.op} before hello: say hello first")
            else:
                result = await self._handlers[request.op](session, request.args)
            reply = _encode_reply(request, result)
        except (MediaStreamError, TypeError) as exc:
            self._reply_error(identity, request.id, exc)
        except Exception as exc:  # the loop must survive a bug in one handler
            log.exception("%s failed", request.op)
            self._reply_error(identity, request.id, exc)
        else:
            self._control.send_multipart([identity, reply])

    def _reply_error(self, identity: bytes, request_id: int, exc: BaseException) -> None:
        self.counters["errors"] += 1
        if isinstance(exc, (MediaStreamError, TypeError)):
            name = exc.name if isinstance(exc, MediaStreamError) else "TypeError"
            message = str(exc)
        else:
            name, message = "AbortError", f"internal error in the daemon: {exc!r}"
        constraint = exc.constraint if isinstance(exc, OverconstrainedError) else None
        reply = wire.encode_error(request_id, name, message, constraint)
        self._control.send_multipart([identity, reply])

    def _hello(self, identity: bytes, payload: zmq.Frame, args: dict[str, Any]) -> dict[str, Any]:
        if args["version"] != wire.PROTOCOL_VERSION:
            raise ProtocolError(
                f"client speaks protocol {args['version']}, daemon {wire.PROTOCOL_VERSION}"
            )
        peer = parse_peer_address(str(payload.get("Peer-Address")))
        check_peer(self.config, peer)  # NotAllowedError naming the rule
        old = self.sessions.get(identity)
        if old is not None:
            self._release_session(old, "hello again")
        self.sessions.open(identity, peer, args["name"][:100])
        return {"heartbeat_s": self.config.heartbeat_s, "daemon_pid": os.getpid()}

    async def _bye(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._release_session(session, "bye")
        return {}

    async def _enumerate_devices(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        return {"devices": [d.to_wire() for d in self.devices]}

    async def _get_user_media(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        requested = parse_gum_constraints(args["constraints"])
        _check_track_room(session, len(requested))
        created: list[TrackRecord] = []
        try:
            for kind, constraint_set in requested.items():
                device, settings = choose_device(self.devices, kind, constraint_set, self._running)
                source, settings = await self._source_for(device, settings, constraint_set)
                created.append(self._add_track(session, source, settings, constraint_set))
                # The device start was awaited: the session may have ended meanwhile
                # (client killed, bye, hello again), and nobody would release the track.
                if self.sessions.get(session.identity) is not session:
                    raise AbortError("the session ended while getUserMedia waited for the device")
        except BaseException:
            for track in created:
                self._release_track(track)
            raise
        return {"tracks": [t.to_wire() for t in created]}

    async def _source_for(
        self, device: Device, settings: dict[str, Any], constraints: dict[str, Any]
    ) -> tuple[Source, dict[str, Any]]:
        """A reference to the source that delivers ``settings``, and the settings
        with the resizeMode it gives. Raises `OverconstrainedError`, `NotReadableError`."""
        source = await self.sources.acquire(device, *ring_format(device, settings))
        try:
            return source, settle_settings(settings, constraints, source)
        except OverconstrainedError:
            self.sources.release(source)
            raise

    def _running(self, device: Device) -> dict[str, Any] | None:
        """The mode a microphone in use runs in (it cannot change it for one
        more track); None for an idle one, and for cameras, which re-open in
        a mode that covers every track."""
        native = self.sources.native_of(device)
        if native is None or device.kind == "videoinput":
            return None
        return settings_for_source(native)

    async def _apply_constraints(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """The spec's ApplyConstraints: all or nothing. A new size, rate or
        format moves the track to the source that delivers it."""
        track = self.tracks.get(args["trackId"])
        if track is None or track.session is not session:
            return {}  # an ended track: the spec resolves and changes nothing
        device = track.source.device
        constraint_set = parse_track_constraints(track.kind, args["constraints"])
        settings, _ = select_for_device(device, constraint_set, self._running_for(track))
        source, settings = await self._source_for(device, settings, constraint_set)
        if self.tracks.get(track.id) is not track:  # stopped or ended while we waited
            self.sources.release(source)
            return {}
        old, track.source = track.source, source
        self.sources.release(old)
        track.settings, track.constraints = settings, constraint_set
        return {"track": track.to_wire()}

    def _running_for(self, track: TrackRecord) -> dict[str, Any] | None:
        """The device's mode as ``track`` may change it: a track alone on its
        device may pick any mode, since nobody else listens."""
        native = self.sources.native_of(track.source.device)
        if native is None or native.device.kind == "videoinput":
            return None
        users = {t.id for t in self.tracks.values() if t.source in self.sources.family(native)}
        return None if users == {track.id} else settings_for_source(native)

    def _add_track(
        self,
        session: Session,
        source: Source,
        settings: dict[str, Any],
        constraints: dict[str, Any],
    ) -> TrackRecord:
        """A new track on ``source``, taking over the caller's reference to it
        (released here when the session may hold no more tracks)."""
        try:
            _check_track_room(session, 1)  # again: requests run concurrently
        except NotReadableError:
            self.sources.release(source)
            raise
        track = TrackRecord(str(uuid.uuid4()), session, source, settings, constraints)
        self.tracks[track.id] = track
        session.tracks.add(track.id)
        return track

    async def _stop_track(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        track = self.tracks.get(args["trackId"])
        if track is not None and track.session is session:
            self._release_track(track)
        return {}  # stopping an ended or unknown track is a no-op, as stop() is

    async def _clone_track(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        original = self.tracks.get(args["trackId"])
        if original is None or original.session is not session:
            raise InvalidStateError(f"track {args['trackId']!r} is not live in this session")
        _check_track_room(session, 1)
        self.sources.retain(original.source)
        clone = self._add_track(
            session, original.source, dict(original.settings), dict(original.constraints)
        )
        return {"track": clone.to_wire()}

    async def _stats(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """What the daemon holds now: for ``mediabroker stats`` and for tests."""
        sessions = [
            {
                "name": s.name,
                "pid": s.peer.pid,
                "uid": s.peer.uid,
                "gid": s.peer.gid,
                "tracks": sorted(s.tracks),
                "delivered": s.delivered,
                "discarded": s.discarded,
            }
            for s in self.sessions
        ]
        sources = [
            {
                "id": s.id,
                "deviceId": s.device.device_id,
                "label": s.device.label,
                "state": s.state.value,
                "refs": s.refs,
                "capture": dict(s.counters),
                "pid": s.pid,
                "ring": s.ring_name,
                **source_figures(s, self.config),
            }
            for s in self.sources
        ]
        return {
            "pid": os.getpid(),
            "sessions": sessions,
            "sources": sources,
            "processes": process_figures(self.sources),
            "counters": dict(self.counters),
        }

    async def _add_fake_device(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._check_operator(session, "add fake devices")
        device = self.fakes.add(args["kind"], args["label"][:100])
        self.set_devices([*self.devices, device])
        return {"deviceId": device.device_id}

    async def _remove_fake_device(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._check_operator(session, "remove fake devices")
        device = next((d for d in self.devices if d.device_id == args["deviceId"]), None)
        if device is None:
            raise NotFoundError(f"no device has the id {args['deviceId']!r}")
        self.fakes.remove(device)
        self.set_devices([d for d in self.devices if d is not device])
        return {}

    async def _publish_stream(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        ids = args["trackIds"]
        if not all(isinstance(i, str) for i in ids):
            raise TypeError("trackIds must be a list of track ids")
        tracks = [t for i in ids if (t := self.tracks.get(i)) is not None and t.session is session]
        self.streams.publish(session, _stream_name(args["name"]), tracks)
        return {}

    async def _unpublish_stream(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self.streams.unpublish(session, args["name"])
        return {}

    async def _attach_stream(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        attachment, mirrors = self.streams.attach(session, _stream_name(args["name"]))
        return {"attachment": attachment, "tracks": [t.to_wire() for t in mirrors]}

    def mirror_track(self, session: Session, original: TrackRecord) -> TrackRecord:
        """A track of ``session`` on ``original``'s source (StreamHost)."""
        self.sources.retain(original.source)
        return self._add_track(
            session, original.source, dict(original.settings), dict(original.constraints)
        )

    def check_track_room(self, session: Session, wanted: int) -> None:
        _check_track_room(session, wanted)

    def end_track(self, track: TrackRecord, reason: str) -> None:
        self._end_track(track, reason)

    def notify(self, session: Session, topic: str, event_type: str, **fields: Any) -> None:
        """Send one session a notice about its own tracks, streams or devices."""
        notice = wire.encode_notice(topic, event_type, **fields)
        self._control.send_multipart([session.identity, notice])

    def _check_operator(self, session: Session, what: str) -> None:
        if session.peer.uid not in (0, os.getuid()):
            raise NotAllowedError(
                f"only root or the daemon's own user (uid {os.getuid()}) may {what}; "
                f"you are uid {session.peer.uid}"
            )

    # -- lifecycle -------------------------------------------------------

    def _release_track(self, track: TrackRecord) -> None:
        if self.tracks.pop(track.id, None) is None:
            return
        track.session.tracks.discard(track.id)
        self.sources.release(track.source)
        self.streams.track_gone(track)

    def _end_track(self, track: TrackRecord, reason: str) -> None:
        """The daemon ends a track: the client sees ``ended``."""
        self.notify(track.session, f"track/{track.id}", "ended", reason=reason)
        self._release_track(track)

    def _release_session(self, session: Session, reason: str) -> None:
        self.streams.session_gone(session)
        for track_id in list(session.tracks):
            self._release_track(self.tracks[track_id])
        self.sessions.close(session, reason)

    def source_muted(self, source: Source, muted: bool) -> None:
        for track in self._tracks_of(source):
            self.notify(track.session, f"track/{track.id}", "mute" if muted else "unmute")

    def source_ended(self, source: Source, reason: str) -> None:
        for track in self._tracks_of(source):
            self._end_track(track, reason)

    def _tracks_of(self, source: Source) -> list[TrackRecord]:
        """Tracks that read ``source`` or a source derived from it."""
        family = self.sources.family(source)
        return [t for t in self.tracks.values() if t.source in family]

    def _publish(self, topic: str, event_type: str, **fields: Any) -> None:
        self._events.send_multipart(wire.encode_event(topic, event_type, **fields))

    async def _reap_sessions(self) -> None:
        """End sessions whose process is gone or whose heartbeats stopped."""
        period = self.config.heartbeat_s / 2
        while True:
            started = time.monotonic()
            await asyncio.sleep(period)
            # Woken late, the loop itself was stalled: heartbeats may still sit
            # unread in the socket, so silence says nothing about the clients.
            stalled = time.monotonic() - started > period + self.config.heartbeat_s
            timeout = math.inf if stalled else self.config.session_timeout_s
            for session, reason in self.sessions.expired(timeout):
                self._release_session(session, reason)

    async def _heartbeat(self) -> None:
        """Tell clients (and systemd's watchdog) that the loop lives; clients end
        their tracks when it goes quiet."""
        watchdog_s = self._notifier.watchdog_interval_s
        interval = min(self.config.heartbeat_s, watchdog_s or math.inf)
        status = ""
        while True:
            self._publish("broker", "heartbeat", pid=os.getpid())
            if watchdog_s is not None:
                self._notifier.watchdog()
            if self._status_line() != status:
                status = self._status_line()
                self._notifier.status(status)
            await asyncio.sleep(interval)

    async def _watch_devices(self) -> None:
        """Re-read the device list (hot-plug) and apply any change."""
        while True:
            await asyncio.sleep(self.config.device_scan_s)
            devices = await asyncio.to_thread(discover_devices, self.config)
            self.set_devices(self.fakes.apply(devices))

    def set_devices(self, devices: list[Device]) -> None:
        """Replace the device list. When it changed, fire ``devicechange``; a
        device that went away ends its tracks (``ended`` on each)."""
        devices = sorted(devices, key=lambda d: d.kind != "audioinput")  # microphones first
        if [d.to_wire() for d in devices] == [d.to_wire() for d in self.devices]:
            return
        known = {d.device_id for d in self.devices}
        inserted = [d.device_id for d in devices if d.device_id not in known]
        present = {d.device_id for d in devices}
        self.devices = devices
        log.info("devices changed: %s", ", ".join(repr(d.label) for d in devices) or "none")
        for source in list(self.sources):
            if source.device.device_id not in present:
                source.end(f"{source.device.label} was removed")
        wire_devices = [d.to_wire() for d in devices]
        for session in self.sessions:
            self.notify(session, "device", "devicechange", devices=wire_devices, inserted=inserted)

    async def reload(self, config: BrokerConfig) -> None:
        """SIGHUP: switch to ``config`` (the caller keeps what needs a restart)
        and re-read the devices; ``devicechange`` fires when the list changed."""
        self.config = config
        devices = await asyncio.to_thread(discover_devices, config)
        if not hasattr(self, "sources"):  # not serving yet: run() starts with these
            self.devices = devices
            return
        self._notifier.reloading()
        self.sources._config = config  # new capture processes get its log level
        self.set_devices(self.fakes.apply(devices))
        self._notifier.ready()

    def _status_line(self) -> str:
        sources = sum(1 for _ in self.sources)
        return f"{len(self.sessions)} client(s), {len(self.tracks)} track(s), {sources} source(s)"


def _encode_reply(request: wire.Request, result: dict[str, Any]) -> bytes:
    """Raises `AbortError` for a result over the message size limit: the
    client gets an error instead of silence."""
    try:
        return wire.encode_reply(request.id, result)
    except ProtocolError as exc:
        raise AbortError(f"the reply to {request.op} is too large to send: {exc}") from exc


def _check_track_room(session: Session, wanted: int) -> None:
    if len(session.tracks) + wanted > MAX_TRACKS_PER_SESSION:
        raise NotReadableError(
            f"this process holds {len(session.tracks)} tracks and may hold "
            f"{MAX_TRACKS_PER_SESSION}; stop the ones it no longer reads"
        )


def _stream_name(name: str) -> str:
    if not 0 < len(name) <= 200 or not name.isprintable():
        raise TypeError(f"a stream name is 1 to 200 printable characters, not {name!r:.60}")
    return name
