"""Per-frame results channels (our extension): one process attaches small
maps to camera frames, any number of others read them.

    pub = md.publishResults("faces", track)        # track: one of this process's video tracks
    pub.send(frame, {"boxes": [[10, 20, 64, 64]]}) # keyed by frame.captureSeq / captureTimestamp
    sub = md.subscribeResults("faces")             # in another process
    for captureSeq, captureTimestamp, data in sub: # newest first; skipped ones are counted
        ...
    sub.get(frame)                                 # the result for that frame, or None

The publisher sends each result on its control connection, with no reply
(about a syscall's cost); the daemon checks it and stores it in a results
ring it owns (`mediastream.results`), and subscribers read that ring
read-only, waking on its futex. The keys are the camera frame's
``captureSeq`` and ``captureTimestamp``, the same on every track derived
from the camera, so a result computed on a 640x360 track lines up with the
1280x720 or 320x180 frame of the same capture. Nothing queues: a slow
subscriber gets the newest result and counts what it skipped
(``sub.stats``); ``get`` finds any of the last ``[results] slots`` (64).
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack

from .errors import (
    ConstraintTypeError,
    InvalidStateError,
    MediaStreamError,
    NotReadableError,
    ReadTimeoutError,
)
from .events import Event, EventHandler, EventTarget
from .frames import NS_PER_S, VideoFrame
from .results import MAX_RESULT_BYTES, Result, ResultsReader, ResultsSegment, decode_result
from .ring import SHM_DIR

if TYPE_CHECKING:
    from .devices import MediaDevices
    from .track import MediaStreamTrack

__all__ = ["Result", "ResultChannels", "ResultPublisher", "ResultSubscription"]

WAIT_SLICE_S = 0.25  # a blocked read looks at the ring at least this often (ended, closed)
MAX_EARLY = 64  # ended notices that overtook their subscribeResults reply
_Item = TypeVar("_Item", "ResultPublisher", "ResultSubscription")


def _pack(data: Mapping[str, Any]) -> bytes:
    """``data`` packed, checked as the daemon checks it. Raises
    `ConstraintTypeError` (a `TypeError`) naming the limit or the problem."""
    if not isinstance(data, Mapping):
        raise ConstraintTypeError(f"a result is a dict, not {type(data).__name__}")
    try:
        packed: bytes = msgpack.packb(dict(data), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConstraintTypeError(f"a result must be msgpack-able (str keys): {exc}") from exc
    if len(packed) > MAX_RESULT_BYTES:
        raise ConstraintTypeError(
            f"a result is at most {MAX_RESULT_BYTES} bytes packed (16 KiB); this one is "
            f"{len(packed)}: send less, or put large arrays in a track of their own"
        )
    try:
        decode_result(packed)
    except ValueError as exc:
        raise ConstraintTypeError(str(exc)) from None
    return packed


def _frame_key(frame: VideoFrame | int, timestamp: float | None) -> tuple[int, int]:
    """(captureSeq, capture ns) from a frame, or from a captureSeq and its timestamp."""
    if isinstance(frame, VideoFrame):
        return frame.captureSeq, round(frame.captureTimestamp * NS_PER_S)
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise ConstraintTypeError(
            f"send takes a VideoFrame or a captureSeq int, not {type(frame).__name__}"
        )
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        raise ConstraintTypeError("send(captureSeq, data, timestamp) needs the captureTimestamp")
    if frame < 0 or timestamp < 0:
        raise ConstraintTypeError("captureSeq and timestamp are not negative")
    return frame, round(timestamp * NS_PER_S)


class ResultPublisher(EventTarget[Event]):
    """A published results channel (`MediaDevices.publishResults`). Fires
    ``ended`` when the daemon ends it (its track ended, the session was
    lost), not after `close`. Thread-safe; a context manager."""

    onended = EventHandler()
    _closed = True  # class default: a half-built publisher reads as closed

    def __init__(self, channels: ResultChannels, name: str, track: MediaStreamTrack[Any]) -> None:
        super().__init__()
        self.name, self.track, self._channels = name, track, channels
        result = channels.request("publishResults", {"name": name, "trackId": track.id})
        self.id = str(result["channel"])
        self.ended = False
        self.end_reason = ""
        self.sent = 0
        self._closed = False

    def send(
        self, frame: VideoFrame | int, data: Mapping[str, Any], timestamp: float | None = None
    ) -> None:
        """Attach ``data`` (a msgpack-able dict of at most 16 KiB packed) to
        ``frame`` (its ``captureSeq`` and ``captureTimestamp``), or to the
        captureSeq ``frame`` captured at ``timestamp`` (CLOCK_MONOTONIC s).
        Does not block (no reply). Raises `ConstraintTypeError` (a
        `TypeError`), `InvalidStateError` once closed or ended."""
        seq, ns = _frame_key(frame, timestamp)
        packed = _pack(data)
        if self._closed or self.ended:
            raise InvalidStateError(f"results {self.name!r}: {self.end_reason or 'closed'}")
        args = {"channel": self.id, "captureSeq": seq, "captureNs": ns, "data": packed}
        self._channels.send(args)
        self.sent += 1

    def close(self) -> None:
        """Withdraw the channel: subscribers see it end. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.end_reason = self.end_reason or "closed by the publisher"
        self._channels.forget(self.id)
        if not self.ended:
            with contextlib.suppress(MediaStreamError):
                self._channels.request("unpublishResults", {"channel": self.id})

    def _end(self, reason: str) -> None:
        if self.ended or self._closed:
            self.ended = True
            return
        self.ended, self.end_reason = True, reason
        self.dispatchEvent(Event("ended"))

    def __enter__(self) -> ResultPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ended" if self.ended else "live"
        return f"<ResultPublisher {self.name!r} sent={self.sent} {state}>"


class ResultSubscription(EventTarget[Event]):
    """Results of a channel (`MediaDevices.subscribeResults`), newest first.
    Iterating blocks for the next result and stops when the channel ends.
    Fires ``ended``. One reading thread at a time; a context manager."""

    onended = EventHandler()
    _segment: ResultsSegment | None = None  # class default: half-built reads as closed

    def __init__(self, channels: ResultChannels, name: str) -> None:
        super().__init__()
        self.name, self._channels = name, channels
        result = channels.request("subscribeResults", {"name": name})
        self.id = str(result["subscription"])
        self.publisher: dict[str, Any] = dict(result["publisher"])
        self._ended, self.end_reason = False, ""
        self._lock = threading.Lock()
        try:
            segment = ResultsSegment.open(str(result["ring"]), shm_dir=channels.shm_dir)
        except MediaStreamError:
            with contextlib.suppress(MediaStreamError):
                channels.request("unsubscribeResults", {"subscription": self.id})
            raise
        self._reader = ResultsReader(segment)
        self._segment = segment

    @property
    def ended(self) -> bool:
        """True once the channel ended (the daemon said so, or marked its ring)."""
        segment = self._segment
        return self._ended or (segment is not None and not segment.closed and segment.ended)

    @property
    def stats(self) -> dict[str, int]:
        """``deliveredResults``, ``skippedResults`` (newer ones came first) and
        ``totalResults``, as ``track.stats`` counts frames."""
        delivered, skipped = self._reader.delivered, self._reader.skipped
        return {
            "deliveredResults": delivered,
            "skippedResults": skipped,
            "totalResults": delivered + skipped,
        }

    def read(self, timeout: float | None = None) -> Result:
        """The newest result not yet read, as ``(captureSeq, captureTimestamp,
        data)``, blocking up to ``timeout`` s (None: wait). Raises
        `ReadTimeoutError`, `NotReadableError` once the channel ended,
        `InvalidStateError` once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                segment = self._live_segment()
                seen = segment.newest
                result = self._reader.take_newest()
                if result is not None:
                    return result
                if self.ended:
                    raise NotReadableError(f"results {self.name!r} ended: {self._why()}")
                remaining = WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise ReadTimeoutError(f"no new result on {self.name!r} within {timeout} s")
                segment.wait(seen, min(remaining, WAIT_SLICE_S))

    def results(self, timeout: float | None = None) -> Iterator[Result]:
        """`read` until the channel ends (then the iteration stops); a timeout raises."""
        while True:
            try:
                yield self.read(timeout)
            except NotReadableError:
                if self.ended:
                    return
                raise

    def __iter__(self) -> Iterator[Result]:
        return self.results()

    def get(self, frame: VideoFrame | int) -> dict[str, Any] | None:
        """The data sent for ``frame`` (its captureSeq and captureTimestamp
        both match) or for a captureSeq, if it has arrived and is among the
        last ``[results] slots`` results, else None. Does not block and does
        not move `read`'s place."""
        ns = None
        if isinstance(frame, VideoFrame):
            seq, ns = _frame_key(frame, None)
        elif isinstance(frame, int) and not isinstance(frame, bool):
            seq = frame
        else:
            raise ConstraintTypeError(f"get takes a VideoFrame or a captureSeq int, not {frame!r}")
        with self._lock:
            found = self._reader.find(seq, ns)
        return None if found is None else found.data

    def _live_segment(self) -> ResultsSegment:
        segment = self._segment
        if segment is None:
            raise InvalidStateError(f"the subscription to {self.name!r} was closed")
        return segment

    def _why(self) -> str:
        return self.end_reason or "the publisher went away"

    def close(self) -> None:
        """Unmap the ring and tell the daemon. Idempotent."""
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.ring()  # wakes a read of ours waiting on it: it sees the subscription closed
        with self._lock:
            segment.close()
        self._channels.forget(self.id)
        if not self.ended:
            with contextlib.suppress(MediaStreamError):
                self._channels.request("unsubscribeResults", {"subscription": self.id})

    def _end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended, self.end_reason = True, reason
        segment = self._segment
        if segment is not None and not segment.closed:
            segment.ring()  # a read waiting looks again and sees the end
        self.dispatchEvent(Event("ended"))

    def __enter__(self) -> ResultSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._segment is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        if self._segment is None:
            return f"<ResultSubscription {self.name!r} closed>"
        state = "ended" if self.ended else "live"
        stats = self.stats
        return (
            f"<ResultSubscription {self.name!r} delivered={stats['deliveredResults']} "
            f"skipped={stats['skippedResults']} {state}>"
        )


class ResultChannels:
    """One MediaDevices' publishers and subscriptions, and their notices."""

    def __init__(self, devices: MediaDevices) -> None:
        self._devices = devices
        self._lock = threading.Lock()
        self._live: dict[str, ResultPublisher | ResultSubscription] = {}
        self._early: dict[str, str] = {}  # id -> reason, for notices before the reply
        self._stale: list[ResultPublisher | ResultSubscription] = []  # of a lost session

    shm_dir = SHM_DIR

    def request(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        return self._devices._connection_request(op, args)

    def send(self, args: dict[str, Any]) -> None:
        args["sentNs"] = time.monotonic_ns()
        self._devices._live_connection().send_only("sendResult", args)

    def publish(self, name: str, track: MediaStreamTrack[Any]) -> ResultPublisher:
        return self._adopt(ResultPublisher(self, name, track))

    def subscribe(self, name: str) -> ResultSubscription:
        return self._adopt(ResultSubscription(self, name))

    def _adopt(self, item: _Item) -> _Item:
        with self._lock:
            self._live[item.id] = item
            reason = self._early.pop(item.id, None)
        if reason is not None:
            item._end(reason)
        return item

    def forget(self, item_id: str) -> None:
        with self._lock:
            self._live.pop(item_id, None)

    def on_notice(self, topic: str, payload: dict[str, Any]) -> None:
        """A ``results/<id>`` notice (dispatch thread)."""
        item_id = topic.partition("/")[2]
        if payload.get("type") != "ended":
            return
        reason = str(payload.get("reason", "the channel ended"))
        with self._lock:
            item = self._live.pop(item_id, None)
            if item is None and len(self._early) < MAX_EARLY:
                self._early[item_id] = reason
        if item is not None:
            item._end(reason)

    def lost(self, reason: str) -> None:
        """The session is gone: every channel and subscription of it ended."""
        with self._lock:
            items, self._live = list(self._live.values()), {}
            self._stale.extend(items)  # ended, still to be closed (unmapped) at close()
        for item in items:
            item._end(f"the session with the daemon ended: {reason}")

    def close(self) -> None:
        with self._lock:
            items, self._stale = [*self._live.values(), *self._stale], []
        for item in items:
            item.close()
