"""MediaDevices: the front door. Connects to the local daemon."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, cast

from .connection import BrokerConnection, process_name
from .errors import ConstraintTypeError, InvalidStateError, MediaStreamError, ProtocolError
from .events import Event, EventHandler, EventTarget
from .generator import VideoTrackGenerator, open_generator
from .paths import resolve_run_dir
from .reader import WAKE_CHECK_S
from .result_channels import ResultChannels, ResultPublisher, ResultSubscription
from .stream import MediaStream
from .track import (
    AUDIO,
    VIDEO,
    AudioTrack,
    MediaStreamTrack,
    ReadT,
    TrackMedia,
    VideoTrack,
)
from .wakeups import AsyncWakeups, Wakeups
from .wire import SUPPORTED_CONSTRAINTS, DeviceInfoDict, TrackInfoDict

__all__ = ["DeviceChangeEvent", "InputDeviceInfo", "MediaDeviceInfo", "MediaDevices"]

log = logging.getLogger(__name__)
MAX_EARLY_TOPICS = 256
P = ParamSpec("P")

DeviceKind = Literal["videoinput", "audioinput", "audiooutput"]


@dataclass(frozen=True, slots=True)
class MediaDeviceInfo:
    deviceId: str
    kind: DeviceKind
    label: str
    groupId: str

    def toJSON(self) -> dict[str, str]:
        return {
            "deviceId": self.deviceId,
            "kind": self.kind,
            "label": self.label,
            "groupId": self.groupId,
        }


@dataclass(frozen=True, slots=True)
class InputDeviceInfo(MediaDeviceInfo):
    _capabilities: dict[str, Any] = field(default_factory=dict, repr=False)

    def getCapabilities(self) -> dict[str, Any]:
        return copy.deepcopy(self._capabilities)


class DeviceChangeEvent(Event):
    """Fired on `MediaDevices` when the device list changed: ``devices`` is the
    new list, ``userInsertedDevices`` the devices that just appeared."""

    def __init__(self, type: str, init: Mapping[str, Any] | None = None) -> None:
        super().__init__(type)
        init = init or {}
        self._devices = tuple(init.get("devices", ()))
        self._inserted = tuple(init.get("userInsertedDevices", ()))

    @property
    def devices(self) -> tuple[MediaDeviceInfo, ...]:
        return self._devices

    @property
    def userInsertedDevices(self) -> tuple[MediaDeviceInfo, ...]:
        return self._inserted


class MediaDevices(EventTarget):
    """A connection to the local mediabroker daemon.

    ``run_dir`` defaults to the daemon's (``$MEDIABROKER_RUNDIR``, else
    /run/mediabroker, else ``$XDG_RUNTIME_DIR/mediabroker``). Raises
    `NotReadableError` when no daemon answers there. ``close()`` (or leaving
    the ``with`` block) stops every track this object gave out.
    """

    ondevicechange = EventHandler()
    _connection: BrokerConnection | None = None

    def __init__(self, run_dir: str | Path | None = None, *, name: str | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir) if run_dir is not None else resolve_run_dir()
        self._tracks: dict[str, MediaStreamTrack] = {}
        self._tracks_lock = threading.Lock()
        self._attached: dict[str, MediaStream] = {}  # attachment id -> proxy stream
        self._results = ResultChannels(self)  # ours: per-frame results channels
        self._generators: dict[str, VideoTrackGenerator] = {}  # ours: generator id -> it
        # Notices can overtake the reply that names their track or attachment
        # (the reply wakes another thread): keep them until it is adopted.
        self._early: collections.OrderedDict[str, list[dict[str, Any]]] = collections.OrderedDict()
        # The connection's threads hold only weak references back, so a
        # forgotten MediaDevices is still collected (and warns, and closes).
        self._forgotten_counts = (0, 0)  # video frames of tracks no longer held
        self._wakeups: Wakeups | None = None  # made at the first fileno, wait or aread
        self._async_wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncWakeups]
        self._async_wakeups = weakref.WeakKeyDictionary()
        counts = weakref.WeakMethod(self._frame_counts)
        self._connection = BrokerConnection(
            self.run_dir,
            name or process_name(),
            _weak(self._on_event),
            _weak(self._on_daemon_lost),
            lambda: (counts() or (lambda: (0, 0)))(),
        )

    # -- the spec's methods ----------------------------------------------

    def enumerateDevices(self) -> list[MediaDeviceInfo]:
        """The daemon's devices, microphones first, then cameras; new objects each call."""
        result = self._connection_request("enumerateDevices")
        return [_device_info(d) for d in result["devices"]]

    def getSupportedConstraints(self) -> dict[str, bool]:
        """``{name: True}`` for each constrainable property the daemon
        understands (`wire.SUPPORTED_CONSTRAINTS`, ``pixelFormat`` included);
        a new dict each call."""
        return dict.fromkeys(SUPPORTED_CONSTRAINTS, True)

    def getUserMedia(self, constraints: Mapping[str, Any] | None = None) -> MediaStream:
        """A stream with one track per requested kind.

        Raises `ConstraintTypeError` (a `TypeError`) when nothing is requested
        or a constraint is malformed, `NotFoundError`,
        `OverconstrainedError`, `NotReadableError`, `AbortError`, and
        `InvalidStateError` once closed.
        """
        if constraints is None:
            raise ConstraintTypeError("getUserMedia needs audio or video (or both) requested")
        if not isinstance(constraints, Mapping):
            raise ConstraintTypeError(
                f"constraints must be a dict, not {type(constraints).__name__}"
            )
        result = self._connection_request("getUserMedia", {"constraints": dict(constraints)})
        return MediaStream(self._adopt_tracks(result["tracks"]))

    def fileno(self) -> int:
        """Not in the spec: a descriptor that is readable when one of this
        object's tracks may have new media, for any event loop (selectors,
        GUI toolkits, ``zmq.Poller``). Then call `wait` with timeout 0, or
        read the tracks that have news. It is the same number for the life
        of this object, but after the daemon restarts a loop must register
        it again (see `mediastream.wakeups`)."""
        return self._wake().fileno()

    def wait(
        self, tracks: Iterable[MediaStreamTrack], timeout: float | None = None
    ) -> list[MediaStreamTrack]:
        """Not in the spec: block until one of ``tracks`` has media a read
        returns at once, or has ended; return those (in the order given), or
        [] after ``timeout`` seconds (None: no limit). One wait for many
        tracks, with no thread per track."""
        watched = list(tracks)
        wakeups = self._wake()
        wakeups.fileno()  # registered before the first look, so no frame is missed
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wakeups.drain()  # first, then look: a later frame rings again
            ready = [t for t in watched if t._has_news()]
            remaining = WAKE_CHECK_S if deadline is None else deadline - time.monotonic()
            if ready or remaining <= 0:
                return ready
            wakeups.sleep(min(remaining, WAKE_CHECK_S))

    def broker_stats(self) -> dict[str, Any]:
        """Not in the spec: what the daemon holds now (sessions with their pid
        and uid, sources with their state and reference count, counters)."""
        return self._connection_request("stats")

    def add_fake_device(self, kind: str, label: str) -> str:
        """Not in the spec: plug a fake ``"videoinput"`` or ``"audioinput"``
        device into the daemon; returns its deviceId. Only root or the
        daemon's own user may; others get `NotAllowedError`."""
        result = self._connection_request("addFakeDevice", {"kind": kind, "label": label})
        return str(result["deviceId"])

    def remove_fake_device(self, deviceId: str) -> None:
        """Not in the spec: unplug a fake device added with `add_fake_device`.
        Its live tracks end (``ended`` fires) and ``devicechange`` fires."""
        self._connection_request("removeFakeDevice", {"deviceId": deviceId})

    def publishStream(self, stream: MediaStream, name: str) -> None:
        """Our extension: publish ``stream`` under ``name`` for other processes
        to `attachStream`. Later ``addTrack``/``removeTrack`` calls on it are
        mirrored to every attached stream. Its tracks must come from this
        MediaDevices. Raises `InvalidStateError` if another process holds the
        name, `ConstraintTypeError` (a `TypeError`) for a bad stream or name."""
        if not isinstance(stream, MediaStream):
            raise ConstraintTypeError(
                f"publishStream takes a MediaStream, not {type(stream).__name__}"
            )
        self._send_stream(stream, name)
        stream._observe(lambda changed: self._send_stream(changed, name))

    def _send_stream(self, stream: MediaStream, name: str) -> None:
        ids = [t.id for t in stream.getTracks() if t.readyState == "live"]
        if self._connection is not None:
            self._connection_request("publishStream", {"name": name, "trackIds": ids})

    def unpublishStream(self, name: str) -> None:
        """Our extension: withdraw a published stream; attached streams' tracks end."""
        self._connection_request("unpublishStream", {"name": name})

    def attachStream(self, name: str) -> MediaStream:
        """Our extension: a stream that follows the one published as ``name``:
        it fires ``addtrack``/``removetrack`` as the publisher changes it, and
        its tracks end (``inactive``) when the publisher's do. Raises
        `NotFoundError` when nothing is published under that name."""
        result = self._connection_request("attachStream", {"name": name})
        stream = MediaStream(self._adopt_tracks(result["tracks"]))
        attachment = str(result["attachment"])
        with self._tracks_lock:
            self._attached[attachment] = stream
        self._replay_early(f"attach/{attachment}")
        return stream

    def publishResults(self, name: str, track: MediaStreamTrack[Any]) -> ResultPublisher:
        """Our extension (`mediastream.result_channels`): publish per-frame
        results for ``track`` (a live video track of this MediaDevices) under
        ``name``; ``pub.send(frame, data)`` attaches a dict to a frame. Raises
        `InvalidStateError` (name taken, track not live), `NotReadableError`
        (a quota), `ConstraintTypeError` (a bad name)."""
        if not isinstance(track, MediaStreamTrack) or track._devices is not self:
            raise ConstraintTypeError("publishResults takes a video track of this MediaDevices")
        return self._results.publish(name, track)

    def subscribeResults(self, name: str) -> ResultSubscription:
        """Our extension: the results published as ``name``, newest first.
        Raises `NotFoundError` (listing the closest names), `NotAllowedError`
        when this user may not map the daemon's rings."""
        return self._results.subscribe(name)

    def listResults(self) -> list[dict[str, Any]]:
        """Our extension: the result channels published now, by name, each
        with its ``publisher`` (process, pid, uid, user), subscribers and
        results sent so far."""
        return list(self._connection_request("listResults")["channels"])

    def listStreams(self) -> list[dict[str, Any]]:
        """Our extension: the shared streams published now, by name, each with
        its ``publisher`` (process, pid, uid, user), tracks and attachments."""
        return list(self._connection_request("listStreams")["streams"])

    def createVideoTrackGenerator(
        self, init: Mapping[str, Any], *, publish: bool = False
    ) -> VideoTrackGenerator:
        """Our extension (the spec's ``VideoTrackGenerator``, see
        `mediastream.generator`): a new video source this process writes,
        ``init`` = ``{"width", "height", "frameRate", "pixelFormat"
        ("bgr24", "rgb24", "gray8"), "label"}``. ``publish=True`` also makes
        it a device (`publishDevice`). Raises `ConstraintTypeError` (a
        `TypeError`) for a bad init, `NotReadableError` past a quota,
        `NotAllowedError` when this user may not publish."""
        generator = open_generator(self, init, publish)
        with self._tracks_lock:
            self._generators[generator.id] = generator
        self._replay_early(f"generator/{generator.id}")
        return generator

    def publishDevice(self, generator: VideoTrackGenerator) -> str:
        """Our extension: make ``generator`` a ``videoinput`` in every
        process's `enumerateDevices` (``devicechange`` fires), labelled as
        produced by this process; returns its deviceId. Idempotent. Only
        users the daemon's ``[access] publish_users``/``publish_groups``
        allow may (`NotAllowedError` otherwise)."""
        if not isinstance(generator, VideoTrackGenerator) or generator._devices is not self:
            raise ConstraintTypeError("publishDevice takes a generator of this MediaDevices")
        generator._check_open()
        result = self._connection_request("publishDevice", {"generatorId": generator.id})
        generator.deviceId = str(result["deviceId"])
        return generator.deviceId

    def _forget_generator(self, generator: VideoTrackGenerator) -> None:
        with self._tracks_lock:
            self._generators.pop(generator.id, None)
        if self._connection is not None:
            with contextlib.suppress(MediaStreamError):
                self._connection_request("closeGenerator", {"generatorId": generator.id})

    def close(self) -> None:
        """Stop every track (no ``ended`` events, as the spec's "stop all
        sources"), say goodbye and disconnect. Idempotent."""
        for generator in list(self._generators.values()):
            generator.close()
        if self._connection is not None:
            self._results.close()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with self._tracks_lock:
            tracks, self._tracks = list(self._tracks.values()), {}
        for track in tracks:
            track._mark_ended(stopped=True)
            track._close_reader()
        connection.say_bye()
        connection.close()
        if self._wakeups is not None:
            self._wakeups.poke()  # coroutines waiting look, and see their tracks ended
            for watcher in list(self._async_wakeups.values()):
                watcher.close()  # before the descriptor closes: its number may be reused
            self._wakeups.close()

    def __enter__(self) -> MediaDevices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._connection is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._connection is None else f"{len(self._tracks)} track(s)"
        return f"<MediaDevices {str(self.run_dir)!r} {state}>"

    # -- for tracks ------------------------------------------------------

    def _live_connection(self) -> BrokerConnection:
        connection = self._connection
        if connection is None:
            raise InvalidStateError("this MediaDevices is closed")
        return connection

    def _connection_request(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._live_connection().request(op, args)

    def _wake(self) -> Wakeups:
        """This object's doorbell FIFO, made on first use."""
        if self._wakeups is None:
            connection = self._live_connection()
            self._wakeups = Wakeups(
                self._register_doorbell,
                lambda: (connection.sessions, connection.shm_prefix),
                os.stat(self.run_dir).st_gid,
            )
        return self._wakeups

    def _register_doorbell(self, fifo: str) -> None:
        self._connection_request("registerDoorbell", {"fifo": fifo})

    def _async_wake(self) -> AsyncWakeups:
        """The doorbell as the running asyncio loop watches it."""
        loop = asyncio.get_running_loop()
        wakeups = self._async_wakeups.get(loop)
        if wakeups is None:
            wakeups = self._async_wakeups[loop] = AsyncWakeups(self._wake())
        return wakeups

    def _poke(self) -> None:
        """Wake every waiter of this object (a track ended or stopped)."""
        if self._wakeups is not None:
            self._wakeups.poke()

    def _adopt_tracks(self, infos: list[TrackInfoDict]) -> list[VideoTrack | AudioTrack]:
        """Tracks for all of ``infos``, or none: when one cannot be opened (its
        ring cannot be mapped, say), the others are stopped and the daemon
        told to release the rest, so that nothing is held that the caller
        never got."""
        adopted: list[VideoTrack | AudioTrack] = []
        try:
            for info in infos:
                adopted.append(self._adopt_either(info))
        except BaseException:
            for track in adopted:
                track.stop()
            for info in infos[len(adopted) :]:
                with contextlib.suppress(MediaStreamError):
                    self._connection_request("stopTrack", {"trackId": info["id"]})
            raise
        return adopted

    def _adopt_either(self, info: TrackInfoDict) -> VideoTrack | AudioTrack:
        """A track typed by its kind (anything but video is audio, as ``kind`` says)."""
        if info["kind"] == "video":
            return self._adopt_track(info, VIDEO)
        return self._adopt_track(info, AUDIO)

    def _adopt_track(
        self, info: TrackInfoDict, media: TrackMedia[ReadT]
    ) -> MediaStreamTrack[ReadT]:
        track = MediaStreamTrack(self, info, media)
        with self._tracks_lock:
            self._tracks[track.id] = track
        self._replay_early(f"track/{track.id}")
        return track

    def _forget_track(self, track: MediaStreamTrack) -> None:
        self._poke()  # a coroutine or `wait` on it looks again, and sees it ended
        with self._tracks_lock:
            if self._tracks.pop(track.id, None) is not None and track.kind == "video":
                stats, (delivered, discarded) = track.stats, self._forgotten_counts
                self._forgotten_counts = (
                    delivered + stats["deliveredFrames"],
                    discarded + stats["discardedFrames"],
                )

    def _frame_counts(self) -> tuple[int, int]:
        """Video frames this process's tracks read and skipped, for the
        daemon's stats (the heartbeat carries them)."""
        with self._tracks_lock:
            tracks = [t for t in self._tracks.values() if t.kind == "video"]
            delivered, discarded = self._forgotten_counts
        for track in tracks:
            stats = track.stats
            delivered += stats["deliveredFrames"]
            discarded += stats["discardedFrames"]
        return delivered, discarded

    # -- events from the daemon (dispatch thread) -------------------------

    def _on_event(self, topic: str, payload: dict[str, Any]) -> None:
        if topic.startswith("results/"):
            self._results.on_notice(topic, payload)
            return
        if topic == "device":
            if payload["type"] == "devicechange":
                self.dispatchEvent(_device_change(payload))
            return
        with self._tracks_lock:
            target = self._target(topic)
            if target is None:
                self._keep_early(topic, payload)
                return
        if isinstance(target, VideoTrackGenerator):
            target._on_notice(payload)
        elif isinstance(target, MediaStream):
            self._on_attached_stream_event(target, payload)
        else:
            self._on_track_event(target, payload)

    def _target(self, topic: str) -> MediaStreamTrack | MediaStream | VideoTrackGenerator | None:
        kind, _, key = topic.partition("/")
        if kind == "track":
            return self._tracks.get(key)
        if kind == "generator":
            return self._generators.get(key)
        return self._attached.get(key) if kind == "attach" else None

    def _keep_early(self, topic: str, payload: dict[str, Any]) -> None:
        self._early.setdefault(topic, []).append(payload)
        while len(self._early) > MAX_EARLY_TOPICS:  # notices for tracks long gone
            self._early.popitem(last=False)

    def _replay_early(self, topic: str) -> None:
        with self._tracks_lock:
            early = self._early.pop(topic, [])
        for payload in early:
            self._on_event(topic, payload)

    def _on_track_event(self, track: MediaStreamTrack, payload: dict[str, Any]) -> None:
        kind = payload["type"]
        if kind == "ended":
            track._end_by_source(str(payload.get("reason", "the source ended")))
        elif kind in ("mute", "unmute"):
            settings = payload.get("settings")
            if isinstance(settings, dict):  # the source was re-framed (camera re-opened)
                track._set_settings(settings)
            track._set_muted(kind == "mute")

    def _on_attached_stream_event(self, stream: MediaStream, payload: dict[str, Any]) -> None:
        if payload["type"] == "addtrack":
            stream._add_track_by_source(self._adopt_either(payload["track"]))
        elif payload["type"] == "removetrack":
            track = stream.getTrackById(str(payload.get("trackId")))
            if track is not None:
                stream._remove_track_by_source(track)

    def _on_daemon_lost(self, reason: str) -> None:
        with self._tracks_lock:
            tracks = list(self._tracks.values())
            generators = list(self._generators.values())
        for track in tracks:
            track._end_by_source(reason)
        for generator in generators:  # its source went with the session
            generator._on_notice({"type": "ended"})
        self._results.lost(reason)


def _device_info(info: DeviceInfoDict) -> MediaDeviceInfo:
    kind = info["kind"]
    if kind not in ("videoinput", "audioinput", "audiooutput"):
        raise ProtocolError(f"the daemon listed a device of unknown kind {kind!r}")
    args = (info["deviceId"], cast(DeviceKind, kind), info["label"], info["groupId"])
    if kind == "audiooutput":
        return MediaDeviceInfo(*args)
    return InputDeviceInfo(*args, info["capabilities"])


def _weak(method: Callable[P, None]) -> Callable[P, None]:
    """``method`` bound weakly: calls are dropped once its object is gone."""
    ref = weakref.WeakMethod(method)

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        bound = ref()
        if bound is not None:
            bound(*args, **kwargs)

    return call


def _device_change(payload: dict[str, Any]) -> DeviceChangeEvent:
    devices = [_device_info(d) for d in payload.get("devices", [])]
    inserted = set(payload.get("inserted", []))
    return DeviceChangeEvent(
        "devicechange",
        {
            "devices": devices,
            "userInsertedDevices": [d for d in devices if d.deviceId in inserted],
        },
    )
