"""`MediaStream`: a set of tracks, as in the W3C Media Capture and Streams API.

A stream only groups tracks: it holds no device and no ring, so building,
cloning or dropping one costs nothing on the daemon. ``active`` is computed
from the tracks on every read, never cached. The script's own ``addTrack()``
and ``removeTrack()`` fire no event (spec: "not fired when the script directly
modifies the tracks"); the daemon's changes go through
``_add_track_by_source()`` / ``_remove_track_by_source()``, which fire
``addtrack`` / ``removetrack``. Track order is insertion order, which the spec
leaves to the implementation; do not rely on it.

The track lists are typed by kind (`VideoTrack`, `AudioTrack`), so reading
``stream.getVideoTracks()[0]`` gives a `VideoFrame` to a type checker. Methods
that take a track take either kind (a bare `MediaStreamTrack`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeGuard, cast

from .events import Event, EventHandler, EventTarget, MediaStreamTrackEvent, TrackLike

if TYPE_CHECKING:
    from .track import AudioTrack, MediaStreamTrack, VideoTrack

__all__ = ["MediaStream"]


class MediaStream(EventTarget[Event]):
    """A set of tracks with a unique ``id``.

    ``MediaStream()`` is empty; ``MediaStream(other)`` holds the same track
    objects as ``other`` (not clones); ``MediaStream([track, ...])`` holds
    those tracks, each once, ended ones included. Raises TypeError for any
    other argument or for an item that is not a track. Thread-safe.
    """

    onaddtrack = EventHandler()
    """Called with a `MediaStreamTrackEvent` when the daemon adds a track."""
    onremovetrack = EventHandler()
    """Called with a `MediaStreamTrackEvent` when the daemon removes a track."""
    onactive = EventHandler()
    """Not in the spec: called when a track the daemon added makes the stream active."""
    oninactive = EventHandler()
    """Not in the spec: called when tracks ending (not `stop()`) make the stream inactive."""

    def __init__(self, init: MediaStream | Iterable[MediaStreamTrack] | None = None) -> None:
        super().__init__()
        self._id = str(uuid.uuid4())
        self._lock = threading.Lock()
        # Keyed by object identity: membership is "this track object", and
        # tracks need not be hashable.
        self._tracks: dict[int, VideoTrack | AudioTrack] = {}
        self._observers: list[Callable[[MediaStream], None]] = []
        for track in _initial_tracks(init):
            self._insert(track)

    @property
    def id(self) -> str:
        """A UUID4 string (36 characters), fixed for the stream's life."""
        return self._id

    @property
    def active(self) -> bool:
        """True when at least one track's ``readyState`` is not ``"ended"``."""
        return any(track.readyState != "ended" for track in self.getTracks())

    def getTracks(self) -> list[VideoTrack | AudioTrack]:
        """A new list of every track; changing it does not change the stream."""
        with self._lock:
            return list(self._tracks.values())

    def getAudioTracks(self) -> list[AudioTrack]:
        """A new list of the tracks whose ``kind`` is ``"audio"``."""
        return [track for track in self.getTracks() if _is_audio(track)]

    def getVideoTracks(self) -> list[VideoTrack]:
        """A new list of the tracks whose ``kind`` is ``"video"``."""
        return [track for track in self.getTracks() if _is_video(track)]

    def getTrackById(self, trackId: str) -> VideoTrack | AudioTrack | None:
        """The member track whose ``id`` is ``trackId``, or None."""
        return next((t for t in self.getTracks() if t.id == trackId), None)

    def addTrack(self, track: MediaStreamTrack) -> None:
        """Add ``track``; a no-op when it is already a member. Fires no event.

        Ended tracks and inactive streams are allowed. Raises TypeError when
        ``track`` is not a track.
        """
        if self._insert(_checked(track)):
            self._notify_observers()

    def removeTrack(self, track: MediaStreamTrack) -> None:
        """Remove ``track``; a no-op when it is not a member. Fires no event.

        Raises TypeError when ``track`` is not a track.
        """
        if self._discard(_checked(track)):
            self._notify_observers()

    def clone(self) -> MediaStream:
        """A new stream (new id) holding ``t.clone()`` of each track."""
        return MediaStream([track.clone() for track in self.getTracks()])

    def _add_track_by_source(self, track: VideoTrack | AudioTrack) -> bool:
        """The spec's "add a track": add, then fire ``addtrack`` if it was new.

        For the client library, when the daemon adds ``track``. Returns
        whether the track set changed. Listeners run in the calling thread
        before this returns.
        """
        was_active = self.active
        changed = self._insert(_checked(track))
        if changed:
            self.dispatchEvent(MediaStreamTrackEvent("addtrack", {"track": track}))
            if not was_active and self.active:
                self.dispatchEvent(Event("active"))
        return changed

    def _remove_track_by_source(self, track: MediaStreamTrack) -> bool:
        """The spec's "remove a track": remove, then fire ``removetrack`` if it was a member.

        For the client library, when the daemon removes ``track``. Returns
        whether the track set changed. Listeners run in the calling thread
        before this returns.
        """
        was_active = self.active
        changed = self._discard(_checked(track))
        if changed:
            self.dispatchEvent(MediaStreamTrackEvent("removetrack", {"track": track}))
            if was_active and not self.active:
                self.dispatchEvent(Event("inactive"))
        return changed

    def _insert(self, track: VideoTrack | AudioTrack) -> bool:
        """Add ``track`` unless present; whether it was added."""
        with self._lock:
            if id(track) in self._tracks:
                return False
            self._tracks[id(track)] = track
        _observe_end(track, self._on_track_ended, add=True)
        return True

    def _discard(self, track: MediaStreamTrack) -> bool:
        """Remove ``track`` if present; whether it was removed."""
        with self._lock:
            removed = self._tracks.pop(id(track), None) is not None
        if removed:
            _observe_end(track, self._on_track_ended, add=False)
        return removed

    def _on_track_ended(self) -> None:
        """A member track ended by its source (`stop()` fires nothing): the last
        one turns the stream inactive."""
        if not self.active:
            self.dispatchEvent(Event("inactive"))

    def _observe(self, observer: Callable[[MediaStream], None]) -> None:
        """Call ``observer(stream)`` after each script change of the track set
        (for published streams, which the daemon mirrors)."""
        self._observers.append(observer)

    def _notify_observers(self) -> None:
        for observer in list(self._observers):
            observer(self)

    def __repr__(self) -> str:
        tracks = self.getTracks()
        state = "active" if any(t.readyState != "ended" for t in tracks) else "inactive"
        return f"<MediaStream {self._id!r} {state} tracks={len(tracks)}>"


def _initial_tracks(init: object) -> list[VideoTrack | AudioTrack]:
    """The tracks a constructor argument names, all checked before any is added."""
    if init is None:
        return []
    if isinstance(init, MediaStream):
        return init.getTracks()
    if isinstance(init, Iterable) and not isinstance(init, (str, bytes, TrackLike)):
        return [_checked(track) for track in init]
    raise TypeError(f"MediaStream() takes a MediaStream or a list of tracks, not {init!r}")


def _checked(track: object) -> VideoTrack | AudioTrack:
    """``track`` itself; raises TypeError when it is not a track."""
    if not isinstance(track, TrackLike):
        raise TypeError(f"expected a MediaStreamTrack, not {track!r}")
    # Any TrackLike behaves as one here, and a real track's type parameter
    # follows its kind (MediaDevices builds them so).
    return cast("VideoTrack | AudioTrack", track)


def _is_video(track: VideoTrack | AudioTrack) -> TypeGuard[VideoTrack]:
    return track.kind == "video"


def _is_audio(track: VideoTrack | AudioTrack) -> TypeGuard[AudioTrack]:
    return track.kind == "audio"


def _observe_end(track: object, observer: Callable[[], None], *, add: bool) -> None:
    """Follow a member track's end by its source; every real track has the hook."""
    hook = getattr(track, "_observe_end", None)
    if hook is not None:
        hook(observer, add=add)
