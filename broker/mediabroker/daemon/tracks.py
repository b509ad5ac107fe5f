"""The daemon's track table: every track it serves, who holds it, what it reads.

A track is one session's hold on one source (a `Lease`). The table is what
the source supervisor reports to (`SourceListener`: a source muted, or
ended) and what shared streams mirror tracks through (`StreamHost`), so
both talk to the tracks, not to the whole daemon. Events about a track go
to its own session only, as notices on the control socket.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from mediabroker.config import BrokerConfig
from mediabroker.daemon.access import describe_uid, over_limit
from mediabroker.daemon.sessions import Session
from mediabroker.daemon.shared_streams import StreamRegistry
from mediabroker.framing import framing_settings
from mediabroker.selection import requires
from mediabroker.sources import Lease, Source
from mediastream import wire
from mediastream.errors import NotReadableError

__all__ = ["MAX_TRACKS_PER_SESSION", "NoticeSender", "TrackRecord", "TrackTable", "new_track_id"]

MAX_TRACKS_PER_SESSION = 256  # keeps every reply about a session within the wire's limits


class NoticeSender(Protocol):
    def __call__(self, session: Session, topic: str, event_type: str, **fields: Any) -> None: ...


def new_track_id() -> str:
    return str(uuid.uuid4())


def holder_name(track_id: str) -> str:
    """How a track shows among a source's holders (``mediabroker stats``)."""
    return f"track:{track_id}"


@dataclass(eq=False)
class TrackRecord:
    """One MediaStreamTrack held by one session."""

    id: str
    session: Session
    lease: Lease
    settings: dict[str, Any]
    constraints: dict[str, Any] = field(default_factory=dict)
    """The last successfully applied constraint set (getConstraints)."""

    @property
    def source(self) -> Source:
        return self.lease.source

    @property
    def kind(self) -> str:
        return self.source.device.media_kind

    def to_wire(self) -> wire.TrackInfoDict:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.source.device.label,
            "muted": self.source.muted,
            "settings": self.settings,
            "constraints": self.constraints,
            "capabilities": self.source.device.capabilities,
            "ring": self.source.ring_name,
        }


class TrackTable:
    """The tracks by id, with the shared streams that mirror them."""

    def __init__(self, send_notice: NoticeSender, config: BrokerConfig) -> None:
        self._tracks: dict[str, TrackRecord] = {}
        self._send_notice = send_notice
        self._config = config
        self.streams = StreamRegistry(self)
        # Told the source of every track added or released (daemon.generators
        # learns so when nobody watches a generator any more).
        self.watchers: list[Callable[[Source], None]] = []

    def __len__(self) -> int:
        return len(self._tracks)

    def __iter__(self) -> Iterator[TrackRecord]:
        return iter(list(self._tracks.values()))

    def of_session(self, session: Session, track_id: object) -> TrackRecord | None:
        """``session``'s live track ``track_id``; None for an ended, unknown or
        another session's track."""
        track = self._tracks.get(str(track_id))
        return track if track is not None and track.session is session else None

    def is_live(self, track: TrackRecord) -> bool:
        return self._tracks.get(track.id) is track

    def add(
        self,
        track_id: str,
        session: Session,
        lease: Lease,
        settings: dict[str, Any],
        constraints: dict[str, Any],
    ) -> TrackRecord:
        """A new track holding ``lease`` (released here when the session may
        hold no more tracks)."""
        try:
            self.check_track_room(session, 1)  # again: requests run concurrently
        except NotReadableError:
            lease.release()
            raise
        track = TrackRecord(track_id, session, lease, settings, constraints)
        self._tracks[track.id] = track
        session.tracks.add(track.id)
        self.sync_doorbell(session)
        self._tell_watchers(track.source)
        return track

    def _tell_watchers(self, source: Source) -> None:
        for watcher in self.watchers:
            watcher(source)

    def mirror_track(self, session: Session, original: TrackRecord) -> TrackRecord:
        """A track of ``session`` on ``original``'s source: a clone, or a
        shared stream's mirror (StreamHost)."""
        track_id = new_track_id()
        lease = original.lease.share(holder_name(track_id))
        return self.add(
            track_id, session, lease, dict(original.settings), dict(original.constraints)
        )

    def send_notice(self, session: Session, topic: str, event_type: str, **fields: Any) -> None:
        """One session's notice, on its control socket (StreamHost)."""
        self._send_notice(session, topic, event_type, **fields)

    def of_uid(self, uid: int) -> list[TrackRecord]:
        return [t for t in self._tracks.values() if t.session.peer.uid == uid]

    def check_track_room(self, session: Session, wanted: int) -> None:
        """Raise `NotReadableError` unless ``session`` may hold ``wanted`` more
        tracks: at most `MAX_TRACKS_PER_SESSION`, and its user at most
        ``limits.tracks_per_user`` over all its sessions."""
        if len(session.tracks) + wanted > MAX_TRACKS_PER_SESSION:
            raise NotReadableError(
                f"this process holds {len(session.tracks)} tracks and may hold "
                f"{MAX_TRACKS_PER_SESSION}; stop the ones it no longer reads"
            )
        held, limit = len(self.of_uid(session.peer.uid)), self._config.tracks_per_user
        if held + wanted > limit:
            what = f"user {describe_uid(session.peer.uid)} holds {held} tracks, the limit"
            reason = over_limit(
                self._config, session.peer, "a track", "tracks_per_user", limit, what
            )
            raise NotReadableError(
                f"{reason}: stop tracks it no longer reads, or ask the administrator to raise it"
            )

    def release(self, track: TrackRecord) -> None:
        """Forget ``track`` and drop its hold on the source. Idempotent."""
        if self._tracks.pop(track.id, None) is None:
            return
        track.session.tracks.discard(track.id)
        self.sync_doorbell(track.session)
        track.lease.release()
        self.streams.track_gone(track)
        self._tell_watchers(track.source)

    def end_track(self, track: TrackRecord, reason: str) -> None:
        """The daemon ends a track: the client sees ``ended``."""
        self.send_notice(track.session, f"track/{track.id}", "ended", reason=reason)
        self.release(track)

    def drop_session(self, session: Session) -> None:
        """Release every track of a session that went away, and its streams."""
        self.streams.session_gone(session)
        for track_id in list(session.tracks):
            self.release(self._tracks[track_id])
        if session.doorbell is not None:
            os.close(session.doorbell)
            session.doorbell = None

    def set_doorbell(self, session: Session, fd: int) -> None:
        """``session``'s process wants its doorbell rung by every source its
        tracks read (``fd``: taken over)."""
        for source in session.rung_by:
            source.readers.drop_bell(_bell_key(session))
        session.rung_by = set()
        if session.doorbell is not None:
            os.close(session.doorbell)
        session.doorbell = fd
        self.sync_doorbell(session)

    def sync_doorbell(self, session: Session) -> None:
        """Make the sources that ring ``session``'s doorbell the ones its
        tracks read now (after a track is added, moved or released)."""
        if session.doorbell is None:
            return
        key = _bell_key(session)
        wanted = {self._tracks[i].source for i in session.tracks if i in self._tracks}
        for source in session.rung_by - wanted:
            source.readers.drop_bell(key)
        for source in wanted - session.rung_by:
            source.readers.add_bell(key, session.doorbell)
        session.rung_by = wanted

    # -- SourceListener ------------------------------------------------------

    def source_muted(self, source: Source, muted: bool) -> None:
        for track in self.of_source(source):
            changed = {} if muted else _reframe(track)
            event = "mute" if muted else "unmute"
            self.send_notice(track.session, f"track/{track.id}", event, **changed)

    def source_ended(self, source: Source, reason: str) -> None:
        for track in self.of_source(source):
            self.end_track(track, reason)

    def source_pinned(self, source: Source, asking: str) -> bool:
        return any(
            requires(t.constraints.get("resizeMode"), "none")
            for t in self._tracks.values()
            if t.source is source and holder_name(t.id) != asking
        )

    def of_source(self, source: Source) -> list[TrackRecord]:
        """Tracks that read ``source`` or a source derived from it."""
        return [t for t in self._tracks.values() if source in (t.source, t.source.parent)]


def _bell_key(session: Session) -> str:
    """How a session's doorbell is named to the capture processes."""
    return session.identity.hex()


def _reframe(track: TrackRecord) -> dict[str, Any]:
    """A camera re-opened in a larger mode resizes the frames of the tracks
    that read its old mode (that source derives from the new one now): their
    settings change to say so, and the unmute notice carries them."""
    if track.kind != "video":
        return {}
    framed = framing_settings(track.settings, track.constraints, track.source)
    if all(track.settings.get(name) == value for name, value in framed.items()):
        return {}
    track.settings = {**track.settings, **framed}
    return {"settings": track.settings}
