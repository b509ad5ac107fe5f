"""Events: `Event`, `MediaStreamTrackEvent` (checklist #73, #17) and `EventTarget`.

EventTarget tests follow the DOM's dispatch rules (listener order, once,
handler attributes, removal during dispatch); they name the DOM rule, as the
checklist has no number for them. Dispatch is synchronous, so "not called" is
checked right after the call returns.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable

import pytest
from test_stream import MakeTrack

from mediastream.events import (
    Event,
    EventHandler,
    EventListener,
    EventTarget,
    MediaStreamTrackEvent,
)


class Pinger(EventTarget[Event]):
    """A target whose handler attributes come from ``_event_types``."""

    _event_types = ("ping", "pong")
    onping: EventListener[Event] | None
    onpong: EventListener[Event] | None


class Beeper(EventTarget[Event]):
    """A target whose handler attribute is an explicit descriptor."""

    onbeep = EventHandler()


def calls(log: list[str], name: str) -> Callable[[Event], None]:
    """A listener that appends ``name`` to ``log``."""
    return lambda event: log.append(name)


# Event


def test_event_attributes() -> None:
    """Event: type as given, no target before dispatch, monotonic timeStamp, no bubbling."""
    before = time.monotonic()
    event = Event("ping")
    assert event.type == "ping"
    assert event.target is None
    assert before <= event.timeStamp <= time.monotonic()
    assert event.bubbles is False and event.cancelable is False
    assert repr(event) == "<Event 'ping'>"


@pytest.mark.parametrize("name", ["type", "target", "timeStamp", "bubbles", "cancelable"])
def test_event_attributes_are_read_only(name: str) -> None:
    """Event: its IDL attributes are readonly."""
    with pytest.raises(AttributeError):
        setattr(Event("ping"), name, None)


def test_event_type_must_be_str() -> None:
    """Event: a non-str type is a TypeError."""
    with pytest.raises(TypeError):
        Event(1)  # type: ignore[arg-type]


# MediaStreamTrackEvent


def test_track_event_takes_two_arguments() -> None:
    """#73: the constructor's length is 2 (type, init), both required."""
    params = inspect.signature(MediaStreamTrackEvent).parameters.values()
    assert [p.name for p in params] == ["type", "init"]
    assert all(p.default is inspect.Parameter.empty for p in params)


def test_track_event_without_init() -> None:
    """#73: no init is a TypeError."""
    with pytest.raises(TypeError):
        MediaStreamTrackEvent("type")  # type: ignore[call-arg]


@pytest.mark.parametrize("init", [None, {}, {"track": None}, {"other": 1}], ids=repr)
def test_track_event_without_track(init: object) -> None:
    """#73: init None, or without a track, or with track None, is a TypeError."""
    with pytest.raises(TypeError):
        MediaStreamTrackEvent("type", init)  # type: ignore[arg-type]


@pytest.mark.parametrize("track", ["foo", 42, object()], ids=repr)
def test_track_event_with_non_track(track: object) -> None:
    """#73 (spec, WebIDL conversion): a track member that is not a track is a TypeError."""
    with pytest.raises(TypeError):
        MediaStreamTrackEvent("type", {"track": track})


def test_track_event_init_must_be_a_mapping(make_track: MakeTrack) -> None:
    """#73: init is a dictionary; the bare track or a list is a TypeError."""
    track = make_track("audio")
    for init in (track, [track], ("track", track)):
        with pytest.raises(TypeError):
            MediaStreamTrackEvent("type", init)  # type: ignore[arg-type]


def test_track_event(make_track: MakeTrack) -> None:
    """#73, #17: e.type is the type, e.track is the track; an Event that does not bubble."""
    track = make_track("video")
    event = MediaStreamTrackEvent("type", {"track": track})
    assert event.type == "type"
    assert event.track is track
    assert isinstance(event, Event)
    assert event.target is None
    assert event.bubbles is False and event.cancelable is False
    assert repr(event) == f"<MediaStreamTrackEvent 'type' track={track.id!r}>"
    with pytest.raises(AttributeError):
        event.track = track  # type: ignore[misc]


# EventTarget: listeners


def test_listener_gets_event_with_target() -> None:
    """DOM dispatch: the listener is called with the event, whose target is now set."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append)
    event = Event("ping")
    assert target.dispatchEvent(event) is True
    assert seen == [event]
    assert event.target is target


def test_dispatch_without_listeners() -> None:
    """DOM dispatch: with nobody listening, dispatch returns True."""
    assert Pinger().dispatchEvent(Event("nobody")) is True


def test_dispatch_rejects_non_event() -> None:
    """DOM dispatch: only Events can be dispatched (TypeError)."""
    with pytest.raises(TypeError):
        Pinger().dispatchEvent("ping")  # type: ignore[arg-type]


def test_listener_only_for_its_type() -> None:
    """DOM: a listener hears only its own type."""
    target = Pinger()
    log: list[str] = []
    target.addEventListener("ping", calls(log, "ping"))
    target.dispatchEvent(Event("pong"))
    assert log == []


def test_adding_twice_is_a_no_op() -> None:
    """DOM add an event listener: the same (type, callback) is added once."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append)
    target.addEventListener("ping", seen.append)  # a new but equal bound method
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 1


def test_same_listener_for_two_types() -> None:
    """DOM: one callback may listen to several types."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append)
    target.addEventListener("pong", seen.append)
    target.dispatchEvent(Event("ping"))
    target.dispatchEvent(Event("pong"))
    assert [e.type for e in seen] == ["ping", "pong"]


def test_listeners_run_in_order_added() -> None:
    """DOM inner invoke: listeners run in the order they were added."""
    target = Pinger()
    log: list[str] = []
    for name in "abc":
        target.addEventListener("ping", calls(log, name))
    target.dispatchEvent(Event("ping"))
    assert log == ["a", "b", "c"]


def test_once() -> None:
    """DOM once: the listener is removed before its first call; it can be added again."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append, once=True)
    target.dispatchEvent(Event("ping"))
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 1
    target.addEventListener("ping", seen.append, once=True)
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 2


def test_once_then_plain_add_is_a_no_op() -> None:
    """DOM: `once` is not part of a listener's identity; the second add is ignored."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append, once=True)
    target.addEventListener("ping", seen.append)
    target.dispatchEvent(Event("ping"))
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 1


def test_remove_listener() -> None:
    """DOM remove an event listener: it is not called again; other types keep theirs."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append)
    target.addEventListener("pong", seen.append)
    target.removeEventListener("ping", seen.append)
    target.dispatchEvent(Event("ping"))
    target.dispatchEvent(Event("pong"))
    assert [e.type for e in seen] == ["pong"]


def test_remove_unknown_listener_is_a_no_op() -> None:
    """DOM: removing a listener never added, or None, does nothing."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append)
    target.removeEventListener("ping", print)
    target.removeEventListener("nothing", print)
    target.removeEventListener("ping", None)
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 1


def test_add_none_is_ignored_and_non_callable_rejected() -> None:
    """DOM: a null callback is ignored; Python: a non-callable is a TypeError."""
    target = Pinger()
    target.addEventListener("ping", None)
    with pytest.raises(TypeError):
        target.addEventListener("ping", "not callable")  # type: ignore[arg-type]
    assert target.dispatchEvent(Event("ping")) is True


def test_raising_listener_is_logged_and_others_run(caplog: pytest.LogCaptureFixture) -> None:
    """DOM report the exception: a listener that raises is logged; the next still runs."""
    target = Pinger()
    log: list[str] = []

    def broken(event: Event) -> None:
        raise ValueError("listener bug")

    target.addEventListener("ping", broken)
    target.addEventListener("ping", calls(log, "after"))
    with caplog.at_level(logging.ERROR, logger="mediastream.events"):
        assert target.dispatchEvent(Event("ping")) is True
    assert log == ["after"]
    [record] = caplog.records
    assert record.name == "mediastream.events"
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_keyboard_interrupt_in_listener_propagates() -> None:
    """Python: only Exceptions are caught; KeyboardInterrupt still stops the program."""
    target = Pinger()

    def interrupt(event: Event) -> None:
        raise KeyboardInterrupt

    target.addEventListener("ping", interrupt)
    with pytest.raises(KeyboardInterrupt):
        target.dispatchEvent(Event("ping"))


# EventTarget: handler attributes


def test_handler_attribute_from_event_types() -> None:
    """Handler attributes: `_event_types` gives on<type>, None until set, called on dispatch."""
    target = Pinger()
    seen: list[Event] = []
    assert target.onping is None and target.onpong is None
    target.onping = seen.append
    assert target.onping == seen.append
    target.dispatchEvent(Event("ping"))
    target.dispatchEvent(Event("pong"))
    assert [e.type for e in seen] == ["ping"]


def test_handler_attribute_from_descriptor() -> None:
    """Handler attributes: `onbeep = EventHandler()` handles "beep"."""
    target = Beeper()
    seen: list[Event] = []
    assert Beeper.onbeep.event_type == "beep"
    target.onbeep = seen.append
    target.dispatchEvent(Event("beep"))
    assert len(seen) == 1


def test_event_types_keep_an_explicit_descriptor() -> None:
    """Handler attributes: `_event_types` does not replace an on<type> the class defines."""

    class Both(EventTarget[Event]):
        _event_types = ("beep",)
        onbeep = EventHandler()

    assert Both.__dict__["onbeep"] is Both.onbeep


def test_handler_needs_on_prefix() -> None:
    """Handler attributes: an EventHandler not named on<type> fails at class creation."""
    with pytest.raises((TypeError, RuntimeError)):

        class Bad(EventTarget[Event]):
            beep = EventHandler()


def test_handler_set_none_unregisters() -> None:
    """Handler attributes: assigning None stops the calls."""
    target = Pinger()
    seen: list[Event] = []
    target.onping = seen.append
    target.onping = None
    assert target.onping is None
    target.dispatchEvent(Event("ping"))
    assert seen == []


def test_handler_rejects_non_callable() -> None:
    """Handler attributes: a non-callable is a TypeError and leaves the old value."""
    target = Pinger()
    seen: list[Event] = []
    target.onping = seen.append
    with pytest.raises(TypeError):
        target.onping = 42  # type: ignore[assignment]
    assert target.onping == seen.append


def test_handler_order_is_where_first_set() -> None:
    """DOM handler attributes: the handler runs at the place where it was first set.

    1. Add a, set the handler, add b: a, handler, b.
    2. Replace the handler: it keeps its place.
    3. Set None then a handler again: it moves to the end.
    """
    target = Pinger()
    log: list[str] = []
    target.addEventListener("ping", calls(log, "a"))
    target.onping = calls(log, "h1")
    target.addEventListener("ping", calls(log, "b"))
    target.dispatchEvent(Event("ping"))
    assert log == ["a", "h1", "b"]
    log.clear()
    target.onping = calls(log, "h2")
    target.dispatchEvent(Event("ping"))
    assert log == ["a", "h2", "b"]
    log.clear()
    target.onping = None
    target.onping = calls(log, "h3")
    target.dispatchEvent(Event("ping"))
    assert log == ["a", "b", "h3"]


def test_handler_and_listener_are_separate() -> None:
    """DOM: f as handler and as listener runs twice; removeEventListener(f) keeps the handler."""
    target = Pinger()
    seen: list[Event] = []
    target.onping = seen.append
    target.addEventListener("ping", seen.append)
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 2
    target.removeEventListener("ping", seen.append)
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 3
    assert target.onping == seen.append


def test_handlers_are_per_instance() -> None:
    """Handler attributes: setting one target's handler leaves other targets alone."""
    first, second = Pinger(), Pinger()
    first.onping = print
    assert second.onping is None


# EventTarget: changes during dispatch, threads


def test_listener_added_during_dispatch_waits_for_next() -> None:
    """DOM: the listener list is copied when dispatch starts."""
    target = Pinger()
    log: list[str] = []
    late = calls(log, "late")
    target.addEventListener("ping", lambda event: target.addEventListener("ping", late))
    target.dispatchEvent(Event("ping"))
    assert log == []
    target.dispatchEvent(Event("ping"))
    assert log == ["late"]


def test_listener_removed_during_dispatch_is_skipped() -> None:
    """DOM: a listener removed by an earlier one is not called (its removed flag)."""
    target = Pinger()
    log: list[str] = []
    later = calls(log, "later")
    target.addEventListener("ping", lambda event: target.removeEventListener("ping", later))
    target.addEventListener("ping", later)
    target.dispatchEvent(Event("ping"))
    assert log == []


def test_handler_cleared_during_dispatch_is_skipped() -> None:
    """DOM: a handler set to None by an earlier listener is not called."""
    target = Pinger()
    log: list[str] = []
    target.addEventListener("ping", lambda event: setattr(target, "onping", None))
    target.onping = calls(log, "handler")
    target.dispatchEvent(Event("ping"))
    assert log == []


def test_handler_replaced_during_dispatch_calls_new_value() -> None:
    """DOM: the handler's value is read when its turn comes."""
    target = Pinger()
    log: list[str] = []
    target.addEventListener("ping", lambda event: setattr(target, "onping", calls(log, "new")))
    target.onping = calls(log, "old")
    target.dispatchEvent(Event("ping"))
    assert log == ["new"]


def test_nested_dispatch_and_once() -> None:
    """Reentrancy: a once listener that dispatches again runs once; nothing deadlocks."""
    target = Pinger()
    seen: list[Event] = []

    def again(event: Event) -> None:
        seen.append(event)
        target.dispatchEvent(Event("ping"))

    target.addEventListener("ping", again, once=True)
    target.dispatchEvent(Event("ping"))
    assert len(seen) == 1


def test_dispatch_from_another_thread() -> None:
    """Threads: a listener runs in the dispatching thread (the client's event thread)."""
    target = Pinger()
    threads: list[threading.Thread] = []
    target.onping = lambda event: threads.append(threading.current_thread())
    worker = threading.Thread(target=target.dispatchEvent, args=(Event("ping"),))
    worker.start()
    worker.join()
    assert threads == [worker]


def test_once_claimed_by_one_of_many_threads() -> None:
    """Threads: 8 threads dispatch at once; a once listener still runs exactly once."""
    target = Pinger()
    seen: list[Event] = []
    target.addEventListener("ping", seen.append, once=True)
    barrier = threading.Barrier(8)

    def dispatch() -> None:
        barrier.wait()
        target.dispatchEvent(Event("ping"))

    workers = [threading.Thread(target=dispatch) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(seen) == 1
