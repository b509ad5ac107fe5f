"""MediaStreamTrack: a proxy for one track the daemon holds for this process.

Design note. A track is generic in what it reads, so that a user's own
``mypy --strict`` sees `VideoFrame` from a video track and `AudioData` from
an audio one without casts: `VideoTrack` is ``MediaStreamTrack[VideoFrame]``
and `AudioTrack` is ``MediaStreamTrack[AudioData]``. There is one class at
run time (``type(track) is MediaStreamTrack`` for both kinds); the parameter
comes from the `TrackMedia` a track is built with, which also holds the
track's zero-information content for when it is disabled. The parameter is
covariant with a default of ``VideoFrame | AudioData``, so a bare
``MediaStreamTrack`` annotation means "a track of either kind" and accepts
both.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias

import numpy as np

from .errors import (
    ConstraintTypeError,
    InvalidStateError,
    NotReadableError,
    ProtocolError,
    ReadTimeoutError,
)
from .events import Event, EventHandler, EventTarget
from .frames import AudioData, VideoFrame, black_frame
from .holds import HoldTable
from .reader import WAKE_CHECK_S, ReaderClosed, SourceReader
from .ring import SHM_DIR
from .wire import TrackInfoDict

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from .devices import MediaDevices
else:
    from typing import TypeVar

__all__ = ["AudioTrack", "MediaStreamTrack", "VideoTrack"]

log = logging.getLogger(__name__)

INHERENT_PROPERTIES = frozenset({"deviceId", "groupId", "facingMode"})

ReadT = TypeVar("ReadT", bound=VideoFrame | AudioData)  # what one read returns
if TYPE_CHECKING:
    # Covariant: a VideoTrack is a MediaStreamTrack. The default (PEP 696)
    # makes a bare MediaStreamTrack mean a track of either kind; the stdlib
    # TypeVar takes ``default`` from 3.13 on, type checkers ship typing_extensions.
    MediaT = TypeVar(
        "MediaT", bound=VideoFrame | AudioData, covariant=True, default=VideoFrame | AudioData
    )
else:
    MediaT = TypeVar("MediaT", bound=VideoFrame | AudioData, covariant=True)


@dataclass(frozen=True, slots=True)
class TrackMedia(Generic[ReadT]):
    """What a track of one kind reads (`VIDEO` or `AUDIO`; internal)."""

    kind: Literal["audio", "video"]
    item_type: type[ReadT]
    blank: Callable[[ReadT], ReadT]
    """The spec's zero-information content of a disabled track, for one read."""

    def narrow(self, item: VideoFrame | AudioData) -> ReadT:
        """``item`` itself; raises `ProtocolError` when it is of the other kind."""
        if isinstance(item, self.item_type):
            return item
        raise ProtocolError(f"a {self.kind} track's ring delivered {type(item).__name__}")


def _silence(data: AudioData) -> AudioData:
    return AudioData(np.zeros_like(data.data), data.sampleRate, data.timestamp, data.position)


VIDEO = TrackMedia("video", VideoFrame, black_frame)
AUDIO = TrackMedia("audio", AudioData, _silence)


class MediaStreamTrack(EventTarget, Generic[MediaT]):
    """One audio or video track. Created by `MediaDevices.getUserMedia` and
    `clone()`, never directly.

    Generic in what `read()` returns: `VideoTrack` (a
    ``MediaStreamTrack[VideoFrame]``) or `AudioTrack`; ``kind`` says which
    at run time.

    Events: ``ended`` (the source ended: device gone, daemon gone; never
    after `stop()`), ``mute`` and ``unmute`` (the source paused, e.g. its
    capture process restarting). Listeners run on the client's event thread.
    """

    onended = EventHandler()
    onmute = EventHandler()
    onunmute = EventHandler()

    def __init__(
        self,
        devices: MediaDevices,
        info: TrackInfoDict,
        media: TrackMedia[MediaT],
        *,
        live: bool = True,
    ) -> None:
        super().__init__()
        self._devices = devices
        self._info = info
        self._media = media
        self._ready_state: Literal["live", "ended"] = "live" if live else "ended"
        self._stopped = False
        self._muted = bool(info["muted"])
        self._enabled = True
        self._end_reason = ""
        self._state_lock = threading.Lock()
        self._holds_lock = threading.Lock()  # one hold table per reader
        self._reader: SourceReader | None = None
        self._end_observers: list[Callable[[], None]] = []
        self._retired_counts = (0, 0)  # (delivered, discarded) of readers closed before
        if live:
            self._reader = SourceReader(info["ring"], self._is_live)

    # -- attributes ------------------------------------------------------

    @property
    def id(self) -> str:
        return self._info["id"]

    @property
    def kind(self) -> Literal["audio", "video"]:
        return "video" if self._info["kind"] == "video" else "audio"

    @property
    def label(self) -> str:
        return self._info["label"]

    @property
    def readyState(self) -> Literal["live", "ended"]:
        return self._ready_state

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def enabled(self) -> bool:
        """Reads deliver media only while enabled; disabled, video reads give
        black frames and audio reads silence. Settable, even once ended."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)

    def getSettings(self) -> dict[str, Any]:
        """The current settings. Once ended, only the inherent properties
        (deviceId, groupId, facingMode) it had then, as the spec says."""
        settings = copy.deepcopy(self._info["settings"])
        if self._ready_state == "ended":
            return {k: v for k, v in settings.items() if k in INHERENT_PROPERTIES}
        return settings

    def getConstraints(self) -> dict[str, Any]:
        """The constraints of the last successful getUserMedia or applyConstraints."""
        return copy.deepcopy(self._info["constraints"])

    def getCapabilities(self) -> dict[str, Any]:
        """The source device's capabilities, in the spec's shapes."""
        return copy.deepcopy(self._info["capabilities"])

    def applyConstraints(self, constraints: Mapping[str, Any] | None = None) -> None:
        """Apply ``constraints`` (None means {}: remove all) as one operation.

        What the track delivers changes with it (size, frame rate, pixel
        format); reads after the return see the new frames. Raises
        `OverconstrainedError` (settings and constraints unchanged) and
        `ConstraintTypeError` (a `TypeError`) for malformed constraints. On an
        ended track it does nothing.
        """
        if constraints is not None and not isinstance(constraints, Mapping):
            raise ConstraintTypeError(
                f"constraints must be a dict, not {type(constraints).__name__}"
            )
        if self._ready_state == "ended":
            return
        result = self._devices._connection_request(
            "applyConstraints", {"trackId": self.id, "constraints": dict(constraints or {})}
        )
        info: TrackInfoDict | None = result.get("track")
        if info is None or self.readyState == "ended":  # ended while we asked
            return
        if info["ring"] != self._info["ring"]:
            self._swap_reader(info)
        self._info = info

    # -- methods ---------------------------------------------------------

    def stop(self) -> None:
        """End the track now, synchronously; fires no event. Idempotent.
        The daemon closes the source when no track uses it any more."""
        if not self._mark_ended(stopped=True):
            return
        self._close_reader()
        self._devices._forget_track(self)
        try:
            self._devices._connection_request("stopTrack", {"trackId": self.id})
        except (NotReadableError, InvalidStateError) as exc:
            log.debug("stopTrack %s: %s (the daemon releases it anyway)", self.id, exc)

    def clone(self) -> MediaStreamTrack[MediaT]:
        """A new track (new id) on the same source; a clone of an ended track is ended."""
        if self._ready_state == "ended":
            ended = MediaStreamTrack(
                self._devices, {**self._info, "id": str(uuid.uuid4())}, self._media, live=False
            )
            ended._end_reason = self._end_reason
            return ended
        result = self._devices._connection_request("cloneTrack", {"trackId": self.id})
        return self._devices._adopt_track(result["track"], self._media)

    def _swap_reader(self, info: TrackInfoDict) -> None:
        new = SourceReader(info["ring"], self._is_live)
        old, self._reader = self._reader, new
        self._retire(old)  # a read blocked on it retries on the new one

    def read(self, timeout: float | None = None, *, hold: bool = False) -> MediaT:
        """Block until media newer than the last read is there and return it.

        Video: the newest frame not yet returned, as a zero-copy view (older
        unread frames are skipped and counted in ``stats``). Audio: every
        sample since the last read. ``timeout`` is in seconds (None: wait).

        ``hold=True`` (video) keeps the frame's pixels intact, with no copy,
        until ``frame.release()`` or the end of ``with track.read(hold=True)
        as frame:``. A track holds up to ``[rings] held_frames`` (2) at once;
        past that, or when its ring has no slot left to spare, the read
        raises `HoldLimitError`. Stopping the track, or applyConstraints
        moving it to another source, releases its holds. Audio blocks are
        always the caller's own: ``hold`` changes nothing for them.

        Raises `ReadTimeoutError`, `InvalidStateError` once stopped, and
        `NotReadableError` once the source has ended.
        """
        hold_for = self.id if hold and self._enabled and self.kind == "video" else ""
        try:
            item = self._read_any_reader(timeout, hold_for)
        except NotReadableError:
            if self._stopped:
                raise InvalidStateError(f"track {self.id} was stopped") from None
            raise NotReadableError(self._end_reason or f"track {self.id} has ended") from None
        if self._enabled:
            return item
        return self._media.blank(item)

    def frames(self, timeout: float | None = None) -> Iterator[MediaT]:
        """Iterate over `read()` until the track ends (a stop or the source
        ending finishes the iteration; a timeout raises)."""
        while True:
            try:
                yield self.read(timeout)
            except (InvalidStateError, NotReadableError):
                if self.readyState == "ended":
                    return
                raise

    async def aread(self, timeout: float | None = None) -> MediaT:
        """`read()` for asyncio, with no thread: the loop watches this
        process's doorbell (`MediaDevices.fileno`), and the read itself never
        blocks. Cancelling it leaves nothing behind."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wakeups = self._devices._async_wake()
        while True:
            if self._has_news():
                try:
                    return self.read(timeout=0)
                except ReadTimeoutError:
                    pass  # a hold lost to the writer, or news gone stale: wait again
            remaining = WAKE_CHECK_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeoutError(f"no new media on track {self.id} within {timeout} s")
            await wakeups.wait(min(remaining, WAKE_CHECK_S))

    async def __aiter__(self) -> AsyncIterator[MediaT]:
        """``async for frame in track``: until the track stops or ends."""
        while True:
            try:
                yield await self.aread()
            except (InvalidStateError, NotReadableError):
                if self.readyState == "ended":
                    return
                raise

    @property
    def stats(self) -> dict[str, int]:
        """Video: the spec's MediaStreamTrackVideoStats for this consumer;
        audio: the same counts in sample frames."""
        delivered, discarded = self._retired_counts
        reader = self._reader
        if reader is not None:
            delivered, discarded = delivered + reader.delivered, discarded + reader.discarded
        return {
            "deliveredFrames": delivered,
            "discardedFrames": discarded,
            "totalFrames": delivered + discarded,
        }

    def _read_any_reader(self, timeout: float | None, hold_for: str = "") -> MediaT:
        while True:
            try:
                reader = self._live_reader()
                if hold_for and reader.holds is None:
                    self._register_holds(reader)
                return self._media.narrow(reader.read(timeout, hold_for))
            except ReaderClosed:
                if self._reader is None:
                    raise NotReadableError(self._end_reason or "the track ended") from None
                # applyConstraints moved the track to another source: read that

    def _register_holds(self, reader: SourceReader) -> None:
        """Give ``reader`` a hold table the ring's writer honours (see
        `mediastream.holds`): made here, opened by the daemon, then unlinked."""
        with self._holds_lock:
            if reader.holds is not None:
                return
            table = HoldTable.create(reader.ring_name, SHM_DIR)
            try:
                result = self._devices._connection_request(
                    "holdFrames", {"trackId": self.id, "table": table.name}
                )
            except BaseException:
                table.close()
                raise
            finally:
                table.unlink()
            table.limit = int(result["limit"])
            reader.attach_holds(table)

    # -- called by MediaDevices and the daemon's events --------------------

    def _live_reader(self) -> SourceReader:
        reader = self._reader
        if self._stopped:
            raise InvalidStateError(f"track {self.id} was stopped; reading needs a live track")
        if self._ready_state == "ended" or reader is None:
            raise NotReadableError(self._end_reason or f"track {self.id} has ended")
        return reader

    def _has_news(self) -> bool:
        """Whether `read` would return (or raise, once ended) at once."""
        reader = self._reader
        return self._ready_state == "ended" or (reader is not None and reader.has_news())

    def _is_live(self) -> bool:
        return self._ready_state == "live"

    def _mark_ended(self, *, stopped: bool, reason: str = "") -> bool:
        """Set readyState to ended; True if this call changed it."""
        with self._state_lock:
            if self._ready_state == "ended":
                return False
            self._ready_state, self._stopped = "ended", stopped
            self._end_reason = reason
        return True

    def _end_by_source(self, reason: str) -> None:
        """The spec's "track ended by the user agent": fire ``ended`` once."""
        if self._mark_ended(stopped=False, reason=reason):
            log.info("track %s ended: %s", self.id, reason)
            self._close_reader()
            self._devices._forget_track(self)
            self.dispatchEvent(Event("ended"))
            for observer in list(self._end_observers):
                observer()  # streams, after the track's own listeners

    def _observe_end(self, observer: Callable[[], None], *, add: bool = True) -> None:
        """(Un)register an internal observer of the source ending this track."""
        if add:
            self._end_observers.append(observer)
        elif observer in self._end_observers:
            self._end_observers.remove(observer)

    def _set_settings(self, settings: dict[str, Any]) -> None:
        """What the track delivers changed under it (before the unmute that says so)."""
        self._info = {**self._info, "settings": settings}

    def _set_muted(self, muted: bool) -> None:
        if self._ready_state == "live" and muted != self._muted:
            self._muted = muted
            self.dispatchEvent(Event("mute" if muted else "unmute"))

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        self._retire(reader)

    def _retire(self, reader: SourceReader | None) -> None:
        """Close a reader, keeping its counts: stats are cumulative for the track."""
        if reader is not None:
            reader.close()
            delivered, discarded = self._retired_counts
            self._retired_counts = (delivered + reader.delivered, discarded + reader.discarded)

    def __repr__(self) -> str:
        return f"<MediaStreamTrack {self.kind} {self.label!r} id={self.id} {self._ready_state}>"


VideoTrack: TypeAlias = MediaStreamTrack[VideoFrame]
"""A video track: `read()` gives a `VideoFrame`. For annotations only:
``isinstance`` takes `MediaStreamTrack`, and ``track.kind`` tells the kind."""
AudioTrack: TypeAlias = MediaStreamTrack[AudioData]
"""An audio track: `read()` gives `AudioData`. For annotations only."""
