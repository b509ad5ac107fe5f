"""What one user's tracks may make the daemon run: distinct sources (each a
capture process) and the shared memory of their rings.

Design note. A request that needs a source its user's tracks do not hold
yet is checked before anything starts, against what that user holds plus
what its requests in flight have reserved, so pipelined requests cannot get
past a limit. A source counts for every user whose tracks hold it: the
limit is what a user may pin, and a camera another user already runs costs
this one a track, not a source. Track counts are `TrackTable`'s.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from mediabroker.config import KEY_OF_FIELD, BrokerConfig
from mediabroker.config_values import MIB
from mediabroker.daemon.access import describe_uid, log_refusal
from mediabroker.daemon.sessions import Session
from mediabroker.daemon.tracks import TrackTable
from mediabroker.sources import Source
from mediastream.errors import NotReadableError

__all__ = ["SourceQuota"]


class SourceQuota:
    """``limits.sources_per_user`` and ``limits.shm_per_user_mib``."""

    def __init__(self, config: BrokerConfig, tracks: TrackTable) -> None:
        self.config = config
        self._tracks = tracks
        self._pending_sources = Counter[int]()
        self._pending_bytes = Counter[int]()

    def held(self, uid: int) -> set[Source]:
        return {track.source for track in self._tracks.of_uid(uid)}

    def shm_limit_bytes(self) -> int:
        """The configured share, else half the budget, else half of /dev/shm
        (a user's first ring passes the default share whatever its size)."""
        config = self.config
        if config.shm_per_user_bytes is not None:
            return config.shm_per_user_bytes
        if config.shm_budget_bytes is not None:
            return config.shm_budget_bytes // 2
        fs = os.statvfs(config.shm_dir)
        return fs.f_blocks * fs.f_frsize // 2

    @contextmanager
    def reserve(self, session: Session, key: object, ring_bytes: int) -> Iterator[None]:
        """Hold room for a source with plan key ``key`` and a ring of
        ``ring_bytes`` while it is acquired; raise `NotReadableError` naming
        the limit when the user has no room. Free when the user already
        holds that source."""
        uid = session.peer.uid
        held = self.held(uid)
        if any(source.plan.key == key for source in held):
            yield
            return
        self._check(session, len(held), sum(s.ring_bytes for s in held), ring_bytes)
        self._pending_sources[uid] += 1
        self._pending_bytes[uid] += ring_bytes
        try:
            yield
        finally:
            self._pending_sources[uid] -= 1
            self._pending_bytes[uid] -= ring_bytes
            if not self._pending_sources[uid]:
                del self._pending_sources[uid], self._pending_bytes[uid]

    def _check(self, session: Session, sources: int, used: int, needed: int) -> None:
        uid = session.peer.uid
        sources += self._pending_sources[uid]
        used += self._pending_bytes[uid]
        where = self.config.config_path or "the defaults"
        user = describe_uid(uid)
        if sources >= self.config.sources_per_user:
            log_refusal(session.peer, "a source", f"the uid holds {sources} sources, the limit")
            raise NotReadableError(
                f"user {user} holds {sources} distinct sources (sizes, rates or formats), "
                f"the limit ({KEY_OF_FIELD['sources_per_user']} = "
                f"{self.config.sources_per_user} in {where}): ask for a size its tracks "
                "already read, stop some, or ask the administrator to raise it"
            )
        limit = self.shm_limit_bytes()
        # With the default share a user's first ring always passes (the
        # budget and /dev/shm's own room still apply): one large stream on a
        # small /dev/shm is no abuse, and its error says what is short.
        first = sources == 0 and self.config.shm_per_user_bytes is None
        if not first and used + needed > limit:
            log_refusal(session.peer, "a ring", f"the uid's rings would pass {limit} bytes")
            raise NotReadableError(
                f"a new ring of {needed / MIB:.1f} MiB would take user {user}'s rings to "
                f"{(used + needed) / MIB:.1f} MiB, over its share of shared memory "
                f"({KEY_OF_FIELD['shm_per_user_bytes']} = {limit / MIB:.1f} in {where}): ask "
                "for smaller frames, stop other streams, or ask the administrator to raise it"
            )
