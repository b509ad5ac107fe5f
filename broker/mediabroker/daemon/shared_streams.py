"""Shared streams (our extension): one process publishes a MediaStream under a
name; others attach to it and follow it.

An attachment holds one mirror track per published track: a track of the
attaching session on the same source, as a clone would be. When the
publisher adds a track, every attachment gets a new mirror and an
``addtrack`` event; when it removes one, the mirror goes with a
``removetrack`` event and then ends; when a published track ends or stops,
or the publisher goes away, the mirrors end, so attached streams turn
inactive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mediabroker.daemon.names import not_found, publisher_info
from mediabroker.daemon.sessions import Session
from mediastream.errors import InvalidStateError

if TYPE_CHECKING:
    from mediabroker.daemon.tracks import TrackRecord

__all__ = ["StreamHost", "StreamRegistry"]


class StreamHost(Protocol):
    """What the registry needs from the daemon."""

    def mirror_track(self, session: Session, original: TrackRecord) -> TrackRecord: ...

    def check_track_room(self, session: Session, wanted: int) -> None: ...

    def end_track(self, track: TrackRecord, reason: str) -> None: ...

    def send_notice(self, session: Session, topic: str, event_type: str, **fields: Any) -> None: ...


@dataclass(eq=False)
class _Attachment:
    id: str
    session: Session
    mirrors: dict[str, TrackRecord] = field(default_factory=dict)  # published id -> mirror

    @property
    def topic(self) -> str:
        return f"attach/{self.id}"

    def forget(self, mirror: TrackRecord) -> None:
        self.mirrors = {k: m for k, m in self.mirrors.items() if m is not mirror}


@dataclass(eq=False)
class _Published:
    name: str
    owner: Session
    tracks: dict[str, TrackRecord]
    attachments: list[_Attachment] = field(default_factory=list)


class StreamRegistry:
    def __init__(self, host: StreamHost) -> None:
        self._host = host
        self._streams: dict[str, _Published] = {}
        self._ids = itertools.count(1)

    def publish(self, session: Session, name: str, tracks: list[TrackRecord]) -> None:
        """Publish (or, for its owner, update) the stream ``name``."""
        published = self._streams.get(name)
        if published is None:
            self._streams[name] = _Published(name, session, {t.id: t for t in tracks})
            return
        if published.owner is not session:
            raise InvalidStateError(f"stream {name!r} is published by another process")
        self._update(published, {t.id: t for t in tracks})

    def _update(self, published: _Published, tracks: dict[str, TrackRecord]) -> None:
        added = [t for tid, t in tracks.items() if tid not in published.tracks]
        removed = [tid for tid in published.tracks if tid not in tracks]
        published.tracks = tracks
        for attachment in published.attachments:
            for track in added:
                self._mirror(attachment, track, announce=True)
            for track_id in removed:
                self._drop_mirror(attachment, track_id, "removed from the published stream")

    def attach(self, session: Session, name: str) -> tuple[str, list[TrackRecord]]:
        """Follow ``name``: (attachment id for its events, the mirror tracks)."""
        published = self._streams.get(name)
        if published is None:
            raise not_found(name, list(self._streams), "stream")
        self._host.check_track_room(session, len(published.tracks))
        attachment = _Attachment(str(next(self._ids)), session)
        published.attachments.append(attachment)
        for track in published.tracks.values():
            self._mirror(attachment, track, announce=False)
        return attachment.id, list(attachment.mirrors.values())

    def unpublish(self, session: Session, name: str) -> None:
        published = self._streams.get(name)
        if published is not None and published.owner is session:
            self._withdraw(published, "the stream was unpublished")

    def track_gone(self, track: TrackRecord) -> None:
        """A track stopped or ended. A published one takes its mirrors with it;
        a mirror just leaves its attachment."""
        for published in list(self._streams.values()):
            if published.tracks.pop(track.id, None) is not None:
                for attachment in published.attachments:
                    mirror = attachment.mirrors.pop(track.id, None)
                    if mirror is not None:
                        self._host.end_track(mirror, "the published track ended")
            for attachment in published.attachments:
                attachment.forget(track)

    def session_gone(self, session: Session) -> None:
        for published in list(self._streams.values()):
            if published.owner is session:
                self._withdraw(published, "the publishing process went away")
            published.attachments = [a for a in published.attachments if a.session is not session]

    def _withdraw(self, published: _Published, reason: str) -> None:
        del self._streams[published.name]
        for attachment in published.attachments:
            for mirror in list(attachment.mirrors.values()):
                self._host.end_track(mirror, reason)
            attachment.mirrors.clear()

    def _mirror(self, attachment: _Attachment, track: TrackRecord, *, announce: bool) -> None:
        mirror = self._host.mirror_track(attachment.session, track)
        attachment.mirrors[track.id] = mirror
        if announce:
            self._host.send_notice(
                attachment.session, attachment.topic, "addtrack", track=mirror.to_wire()
            )

    def _drop_mirror(self, attachment: _Attachment, track_id: str, reason: str) -> None:
        mirror = attachment.mirrors.pop(track_id, None)
        if mirror is not None:
            self._host.send_notice(
                attachment.session, attachment.topic, "removetrack", trackId=mirror.id
            )
            self._host.end_track(mirror, reason)

    def names(self) -> list[str]:
        return sorted(self._streams)

    def listing(self, viewer: Session) -> list[dict[str, Any]]:
        """Each published stream: name, publisher, tracks, attachments."""
        return [
            {
                "name": p.name,
                "publisher": publisher_info(p.owner, viewer),
                "tracks": len(p.tracks),
                "attached": len(p.attachments),
            }
            for p in sorted(self._streams.values(), key=lambda p: p.name)
        ]
