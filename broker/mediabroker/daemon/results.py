"""Per-frame results channels (our extension): the daemon's side.

A process publishes a channel under a name for one of its video tracks
(``publishResults``); it then sends results (``sendResult``, no reply), each a
small msgpack map about one camera frame, and the daemon stores them in a
results ring it owns (`mediastream.results`), which subscribers map
read-only. Nothing is sent to subscribers per result: they wait on the
ring's futex. The channel ends when its publisher unpublishes it, its track
stops or ends, or its session goes away: the ring is marked ended, its
readers woken, the segment unlinked, and every subscriber and the publisher
get an ``ended`` notice (topic ``results/<id>``).

Who may subscribe: any session, as for attaching a shared stream (the
ring's mode and group decide who may map it, as for video rings). Names
follow the stream names' rule. Quotas: ``[results] per_session`` and
``per_user`` channels published.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediabroker.config import BrokerConfig
from mediabroker.config_values import MIB
from mediabroker.daemon.access import describe_uid, over_limit
from mediabroker.daemon.names import check_name, not_found, publisher_info
from mediabroker.daemon.sessions import Session
from mediabroker.sources.rings import used_bytes
from mediastream.errors import (
    ConstraintTypeError,
    InvalidStateError,
    NotReadableError,
)
from mediastream.results import (
    MAX_RESULT_BYTES,
    ResultsSegment,
    ResultsWriter,
    decode_result,
    results_bytes,
)

if TYPE_CHECKING:
    from mediabroker.daemon.tracks import TrackRecord, TrackTable
    from mediabroker.sources import Source

__all__ = ["ResultOps", "ResultRegistry"]

log = logging.getLogger(__name__)

MAX_U63 = 2**63 - 1
# What one channel may store: per-frame results at any camera rate fit, a
# flood costs the daemon's loop at most this (past it, results are dropped
# and counted, as the listing shows).
MAX_RESULTS_PER_S = 1000.0
RESULTS_BURST = 200
MAX_SUBSCRIPTIONS_PER_SESSION = 64  # each costs the daemon a dict entry, the client a mapping

NoticeSender = Callable[..., None]


@dataclass(eq=False)
class _Channel:
    id: str
    name: str
    owner: Session
    track: TrackRecord
    writer: ResultsWriter
    subscribers: dict[str, Session] = field(default_factory=dict)  # subscription id -> session
    tokens: float = RESULTS_BURST  # the rate cap's bucket
    refilled: float = field(default_factory=time.monotonic)
    dropped: int = 0

    def admit(self) -> bool:
        """Take a token for one more result; False (and counted) past the cap."""
        now = time.monotonic()
        self.tokens = min(RESULTS_BURST, self.tokens + (now - self.refilled) * MAX_RESULTS_PER_S)
        self.refilled = now
        if self.tokens < 1:
            self.dropped += 1
            return False
        self.tokens -= 1
        return True

    @property
    def segment(self) -> ResultsSegment:
        return self.writer.segment


class ResultRegistry:
    """The published result channels by name."""

    def __init__(self, config: BrokerConfig, tracks: TrackTable, send_notice: NoticeSender) -> None:
        self._config = config
        self._tracks = tracks
        self._send_notice = send_notice
        self._channels: dict[str, _Channel] = {}  # by name
        self._by_id: dict[str, _Channel] = {}
        self._ids = itertools.count(1)
        tracks.watchers.append(self._track_changed)

    def __len__(self) -> int:
        return len(self._channels)

    def publish(self, session: Session, name: str, track_id: str) -> dict[str, Any]:
        """A new channel for ``session``'s video track ``track_id``. Raises
        `InvalidStateError` (name taken, track not live), `NotReadableError`
        (a quota, no room in /dev/shm)."""
        track = self._tracks.of_session(session, track_id)
        if track is None or track.kind != "video":
            raise InvalidStateError(f"track {track_id!r} is not a live video track of this process")
        if name in self._channels:
            raise InvalidStateError(f"results {name!r} are already published; pick another name")
        self._check_room(session)
        ring_name = f"{self._config.shm_prefix}results.{secrets.token_hex(6)}"
        self._check_budget(ring_name)
        segment = ResultsSegment.create(
            ring_name,
            self._config.results_slots,
            gid=self._config.socket_group,  # mode 0640: the group may map it
            shm_dir=self._config.shm_dir,
        )
        channel = _Channel(f"p{next(self._ids)}", name, session, track, ResultsWriter(segment))
        self._channels[name] = self._by_id[channel.id] = channel
        log.info("%r publishes results %r on track %s (%s)", session, name, track.id, ring_name)
        return {"channel": channel.id, "ring": ring_name, "slots": segment.slot_count}

    def _check_room(self, session: Session) -> None:
        config, peer = self._config, session.peer
        mine = sum(1 for c in self._channels.values() if c.owner is session)
        if mine >= config.results_per_session:
            raise NotReadableError(
                f"this process publishes {mine} result channels, the limit ([results] "
                f"per_session = {config.results_per_session}); close some first"
            )
        held = sum(1 for c in self._channels.values() if c.owner.peer.uid == peer.uid)
        if held >= config.results_per_user:
            what = f"user {describe_uid(peer.uid)} publishes {held} result channels, the limit"
            reason = over_limit(
                config, peer, "a results channel", "results_per_user", config.results_per_user, what
            )
            raise NotReadableError(f"{reason}: close some, or ask the administrator to raise it")

    def _check_budget(self, ring_name: str) -> None:
        budget = self._config.shm_budget_bytes
        needed = results_bytes(self._config.results_slots)
        if budget is not None and used_bytes(self._config) + needed > budget:
            raise NotReadableError(
                f"the results ring {ring_name!r} needs {needed / MIB:.1f} MiB, over the "
                "shared-memory budget (rings.shm_budget_mib); stop other streams or raise it"
            )

    def subscribe(self, session: Session, name: str) -> dict[str, Any]:
        """Follow channel ``name``: its ring and a subscription id for its
        ``ended`` notice. Raises `NotFoundError` naming the closest names."""
        channel = self._channels.get(name)
        if channel is None:
            raise not_found(name, list(self._channels), "results channel")
        held = sum(s is session for c in self._channels.values() for s in c.subscribers.values())
        if held >= MAX_SUBSCRIPTIONS_PER_SESSION:
            raise NotReadableError(
                f"this process holds {held} result subscriptions, the most it may; "
                "close the ones it no longer reads"
            )
        subscription = f"s{next(self._ids)}"
        channel.subscribers[subscription] = session
        return {
            "subscription": subscription,
            "ring": channel.segment.name,
            "slots": channel.segment.slot_count,
            "publisher": publisher_info(channel.owner, session),
        }

    def unsubscribe(self, session: Session, subscription: str) -> None:
        for channel in self._channels.values():
            if channel.subscribers.get(subscription) is session:
                del channel.subscribers[subscription]

    def unpublish(self, session: Session, channel_id: str) -> None:
        """Idempotent; another session's channel is left alone."""
        channel = self._by_id.get(channel_id)
        if channel is not None and channel.owner is session:
            self._end(channel, "the publisher closed the channel")

    def send(self, session: Session, args: dict[str, Any]) -> None:
        """One result (``sendResult``, no reply). Raises `InvalidStateError`
        for a channel not this session's, `ConstraintTypeError` for bad values."""
        channel = self._by_id.get(args["channel"])
        if channel is None or channel.owner is not session:
            raise InvalidStateError(f"results channel {args['channel']!r} is not published here")
        seq, ns, sent = args["captureSeq"], args["captureNs"], args["sentNs"]
        if not all(0 <= value <= MAX_U63 for value in (seq, ns, sent)):
            raise ConstraintTypeError("captureSeq, captureNs and sentNs are 0 to 2**63 - 1")
        data: bytes = args["data"]
        if len(data) > MAX_RESULT_BYTES:
            raise ConstraintTypeError(f"a result is at most {MAX_RESULT_BYTES} bytes packed")
        try:
            decode_result(data)
        except ValueError as exc:
            raise ConstraintTypeError(str(exc)) from None
        if channel.admit():
            channel.writer.write(seq, ns, data, sent)

    def listing(self, viewer: Session) -> list[dict[str, Any]]:
        return [
            {
                "name": c.name,
                "publisher": publisher_info(c.owner, viewer),
                "subscribers": len(c.subscribers),
                "results": c.writer.count,
                "dropped": c.dropped,
                "track": c.track.source.device.label,
            }
            for c in sorted(self._channels.values(), key=lambda c: c.name)
        ]

    def _track_changed(self, source: Source) -> None:
        """A track was added or released (`TrackTable.watchers`): the channels
        whose track is gone end."""
        for channel in list(self._channels.values()):
            if not self._tracks.is_live(channel.track):
                self._end(channel, "the published track ended")

    def session_gone(self, session: Session) -> None:
        for channel in list(self._channels.values()):
            if channel.owner is session:
                self._end(channel, "the publishing process went away", tell_owner=False)
            channel.subscribers = {k: s for k, s in channel.subscribers.items() if s is not session}

    def close_all(self, reason: str) -> None:
        for channel in list(self._channels.values()):
            self._end(channel, reason)

    def _end(self, channel: _Channel, reason: str, *, tell_owner: bool = True) -> None:
        if self._channels.get(channel.name) is not channel:
            return
        del self._channels[channel.name], self._by_id[channel.id]
        segment = channel.segment
        channel.writer.end()
        ResultsSegment.unlink(segment.name, self._config.shm_dir)
        segment.close()
        log.info(
            "results %r ended after %d result(s): %s", channel.name, channel.writer.count, reason
        )
        for subscription, session in channel.subscribers.items():
            self._send_notice(session, f"results/{subscription}", "ended", reason=reason)
        if tell_owner:
            self._send_notice(channel.owner, f"results/{channel.id}", "ended", reason=reason)


class ResultOps:
    """publishResults, unpublishResults, subscribeResults, unsubscribeResults,
    sendResult (no reply), listResults and listStreams (our extension)."""

    def __init__(self, results: ResultRegistry, tracks: TrackTable) -> None:
        self._results = results
        self._tracks = tracks

    def table(self) -> dict[str, Any]:
        return {
            "publishResults": self.publish,
            "unpublishResults": self.unpublish,
            "subscribeResults": self.subscribe,
            "unsubscribeResults": self.unsubscribe,
            "listResults": self.list_results,
            "listStreams": self.list_streams,
        }

    def no_reply_table(self) -> dict[str, Callable[[Session, dict[str, Any]], None]]:
        return {"sendResult": self._results.send}

    async def publish(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        name = check_name(args["name"], "a results channel name")
        return self._results.publish(session, name, args["trackId"])

    async def unpublish(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._results.unpublish(session, args["channel"])
        return {}

    async def subscribe(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        name = check_name(args["name"], "a results channel name")
        return self._results.subscribe(session, name)

    async def unsubscribe(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._results.unsubscribe(session, args["subscription"])
        return {}

    async def list_results(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        return {"channels": self._results.listing(session)}

    async def list_streams(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        return {"streams": self._tracks.streams.listing(session)}
