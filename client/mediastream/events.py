"""DOM-style events: `Event`, `MediaStreamTrackEvent` and `EventTarget`.

Design note. Dispatch is synchronous and follows the DOM's "inner invoke"
steps for a target with no tree (no capture, no bubbling, nothing to
cancel):

* the listener list for the event's type is copied when dispatch starts, so
  a listener added during a dispatch is not called by it, and one removed
  during a dispatch (by an earlier listener or another thread) is skipped;
* a ``once`` listener is removed just before it is called, and only one
  dispatch can claim it, even when two threads dispatch at the same time;
* an event handler attribute (``target.onfoo = f``) takes the place in the
  list where it was first set to a callable, as in the DOM: assigning another
  callable keeps that place, assigning ``None`` removes it, and a later
  assignment goes to the end. The handler is a listener of its own, apart
  from ``addEventListener``: ``f`` added both ways is called twice.

Listeners run in whichever thread dispatches: the client's background
event thread for changes made by the daemon. The listener tables are guarded
by a lock that is never held while a listener runs, so a listener may add or
remove listeners or dispatch again. A listener that raises is logged on this
module's logger and the others still run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Protocol,
    cast,
    overload,
    runtime_checkable,
)

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from .track import AudioTrack, VideoTrack
else:
    from typing import TypeVar

__all__ = [
    "Event",
    "EventHandler",
    "EventListener",
    "EventTarget",
    "MediaStreamTrackEvent",
    "TrackLike",
]

_log = logging.getLogger(__name__)


# Here rather than in stream.py: MediaStreamTrackEvent checks its track
# against it, and stream.py imports this module, never the other way round.
@runtime_checkable
class TrackLike(Protocol):
    """What a stream needs from a track; `MediaStreamTrack` satisfies it."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str:
        """``"audio"`` or ``"video"``."""
        ...

    @property
    def readyState(self) -> str:
        """``"live"`` or ``"ended"``."""
        ...

    def clone(self) -> TrackLike: ...


class Event:
    """An event: ``type``, ``target`` (set by dispatch) and ``timeStamp``.

    ``timeStamp`` is the creation time in ``time.monotonic()`` seconds (the
    same clock as frame timestamps), not the DOM's milliseconds. Events here
    never bubble and cannot be cancelled. Raises TypeError when ``type`` is
    not a str.
    """

    __slots__ = ("_target", "_time_stamp", "_type")

    def __init__(self, type: str) -> None:
        if not isinstance(type, str):
            raise TypeError(f"event type must be a str, not {type!r}")
        self._type = type
        self._target: EventTarget[Any] | None = None
        self._time_stamp = time.monotonic()

    @property
    def type(self) -> str:
        """The event's name, e.g. ``"addtrack"``."""
        return self._type

    @property
    def target(self) -> EventTarget[Any] | None:
        """The target it was last dispatched to; None before any dispatch."""
        return self._target

    @property
    def timeStamp(self) -> float:
        """Creation time, ``time.monotonic()`` seconds."""
        return self._time_stamp

    @property
    def bubbles(self) -> bool:
        """Always False: there is no tree to bubble through."""
        return False

    @property
    def cancelable(self) -> bool:
        """Always False: nothing here has a default action to cancel."""
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._type!r}>"


class MediaStreamTrackEvent(Event):
    """``addtrack`` / ``removetrack`` on a MediaStream; ``track`` says which.

    ``init`` is the spec's MediaStreamTrackEventInit: a mapping whose
    ``"track"`` key (required) holds the track. Raises TypeError when
    ``init`` is not a mapping or its track is missing, None or not a track.
    """

    __slots__ = ("_track",)

    def __init__(self, type: str, init: Mapping[str, Any]) -> None:
        super().__init__(type)
        self._track = _track_from_init(init)

    @property
    def track(self) -> VideoTrack | AudioTrack:
        """The track that was added or removed."""
        # Typed as the tracks MediaStream fires with, so a listener can read it.
        return cast("VideoTrack | AudioTrack", self._track)

    def __repr__(self) -> str:
        return f"<MediaStreamTrackEvent {self.type!r} track={self._track.id!r}>"


def _track_from_init(init: object) -> TrackLike:
    """The validated ``init["track"]`` of a MediaStreamTrackEventInit."""
    if not isinstance(init, Mapping):
        raise TypeError(f"MediaStreamTrackEvent needs an init mapping with 'track', not {init!r}")
    track = init.get("track")
    if not isinstance(track, TrackLike):
        raise TypeError(f"MediaStreamTrackEvent init['track'] must be a track, not {track!r}")
    return track


if TYPE_CHECKING:
    # A bare ``EventTarget`` means ``EventTarget[Event]`` (PEP 696). The stdlib
    # TypeVar takes ``default`` from 3.13 on; type checkers ship typing_extensions.
    EventT = TypeVar("EventT", bound=Event, default=Event)
else:
    EventT = TypeVar("EventT", bound=Event)

EventListener = Callable[[EventT], object]
"""A listener: called with the event, its return value ignored."""


@dataclass(eq=False, slots=True)
class _Entry(Generic[EventT]):
    """One place in a type's listener list.

    ``callback`` None marks the place of the event handler attribute, whose
    current value lives in ``EventTarget._handlers``.
    """

    callback: EventListener[EventT] | None
    once: bool = False
    removed: bool = False


class EventTarget(Generic[EventT]):
    """Something events are dispatched to (see the module note for the order).

    The type parameter is the event class this target fires, so that typed
    listeners check. Handler attributes come from `EventHandler` descriptors
    (``onfoo = EventHandler()``, visible to type checkers) or from the names
    in a subclass's ``_event_types``, which get an ``on<name>`` descriptor
    each unless the class already defines one. Every method is thread-safe.
    """

    _event_types: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for type_ in cls.__dict__.get("_event_types", ()):
            if "on" + type_ not in cls.__dict__:
                setattr(cls, "on" + type_, EventHandler(type_))

    def __init__(self) -> None:
        self._listener_lock = threading.Lock()
        self._listeners: dict[str, list[_Entry[EventT]]] = {}
        self._handlers: dict[str, EventListener[EventT]] = {}

    def addEventListener(
        self, type: str, listener: EventListener[EventT] | None, *, once: bool = False
    ) -> None:
        """Call ``listener(event)`` on each dispatch of ``type``.

        Idempotent: a listener already registered for ``type`` (compared with
        ``==``, so a bound method matches a fresh one) is not added again.
        ``once=True`` removes it before its first call. None is ignored, as
        in the DOM. Raises TypeError when ``listener`` is not callable.
        """
        if listener is None:
            return
        _check_callable(listener)
        with self._listener_lock:
            entries = self._listeners.setdefault(type, [])
            if _find(entries, listener) is None:
                entries.append(_Entry(listener, once))

    def removeEventListener(self, type: str, listener: EventListener[EventT] | None) -> None:
        """Stop calling ``listener`` for ``type``; a no-op if it was not added.

        Takes effect at once, also for a dispatch in progress. Does not touch
        the ``on<type>`` handler attribute.
        """
        with self._listener_lock:
            entries = self._listeners.get(type, [])
            entry = _find(entries, listener) if listener is not None else None
            if entry is not None:
                self._drop(type, entry)

    def dispatchEvent(self, event: EventT) -> bool:
        """Set ``event.target`` to this target and call its listeners, in order.

        Synchronous: every listener has run when it returns. Always returns
        True, since no event here is cancelable. Raises TypeError when
        ``event`` is not an `Event`; never raises what a listener raised.
        """
        if not isinstance(event, Event):
            raise TypeError(f"dispatchEvent needs an Event, not {event!r}")
        event._target = self
        with self._listener_lock:
            entries = list(self._listeners.get(event.type, ()))
        for entry in entries:
            callback = self._claim(event.type, entry)
            if callback is not None:
                self._invoke(callback, event)
        return True

    def _claim(self, type_: str, entry: _Entry[EventT]) -> EventListener[EventT] | None:
        """The callable to run for ``entry`` now, or None when it was removed."""
        with self._listener_lock:
            if entry.removed:
                return None
            if entry.once:
                self._drop(type_, entry)
            if entry.callback is None:
                return self._handlers.get(type_)
            return entry.callback

    def _invoke(self, callback: EventListener[EventT], event: EventT) -> None:
        """Run one listener; log what it raises and carry on (DOM "report the exception")."""
        try:
            callback(event)
        # One faulty listener must not silence the others; BaseException
        # (KeyboardInterrupt, SystemExit) still propagates.
        except Exception:
            _log.exception("%r listener %r raised on %r", event.type, callback, self)

    def _drop(self, type_: str, entry: _Entry[EventT]) -> None:
        """Remove ``entry`` from the list; the caller holds the lock."""
        entry.removed = True
        self._listeners[type_].remove(entry)

    def _get_handler(self, type_: str) -> EventListener[EventT] | None:
        """The ``on<type_>`` attribute's value."""
        with self._listener_lock:
            return self._handlers.get(type_)

    def _set_handler(self, type_: str, value: EventListener[EventT] | None) -> None:
        """Set ``on<type_>``; None removes it (see the module note for the order)."""
        if value is not None:
            _check_callable(value)
        with self._listener_lock:
            if value is None:
                self._clear_handler(type_)
                return
            if type_ not in self._handlers:
                self._listeners.setdefault(type_, []).append(_Entry(None))
            self._handlers[type_] = value

    def _clear_handler(self, type_: str) -> None:
        """Remove the handler and its place in the list; the caller holds the lock."""
        if self._handlers.pop(type_, None) is None:
            return
        entry = next(e for e in self._listeners[type_] if e.callback is None)
        self._drop(type_, entry)


class EventHandler:
    """Descriptor for an ``on<type>`` event handler attribute.

    ``onaddtrack = EventHandler()`` in an `EventTarget` subclass handles
    ``"addtrack"`` (the name after ``on``). Reading gives the current
    callable or None; assigning a callable registers it, None unregisters
    it; assigning anything else raises TypeError.
    """

    def __init__(self, type: str | None = None) -> None:
        self._type = type

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if self._type is None:
            if not name.startswith("on") or len(name) < 3:
                raise TypeError(f"EventHandler() needs a name 'on<type>', not {name!r}")
            self._type = name[2:]

    @property
    def event_type(self) -> str:
        """The event type this attribute handles."""
        if self._type is None:
            raise TypeError("EventHandler() was created outside a class body without a type")
        return self._type

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> EventHandler: ...

    @overload
    def __get__(
        self, obj: EventTarget[EventT], owner: type[Any]
    ) -> EventListener[EventT] | None: ...

    def __get__(
        self, obj: EventTarget[EventT] | None, owner: type[Any]
    ) -> EventHandler | EventListener[EventT] | None:
        if obj is None:
            return self
        return obj._get_handler(self.event_type)

    def __set__(self, obj: EventTarget[EventT], value: EventListener[EventT] | None) -> None:
        obj._set_handler(self.event_type, value)


def _find(entries: list[_Entry[EventT]], listener: object) -> _Entry[EventT] | None:
    """The entry added with ``addEventListener(listener)``, if any."""
    return next((e for e in entries if e.callback is not None and e.callback == listener), None)


def _check_callable(listener: object) -> None:
    if not callable(listener):
        raise TypeError(f"an event listener must be callable, not {listener!r}")
