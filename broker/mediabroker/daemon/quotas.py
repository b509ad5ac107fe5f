"""What one user's tracks may make the daemon run: distinct sources (each a
capture process) and the shared memory of their rings.

Design note. What a user is charged for, its *charge*:

- every source its tracks hold (a camera another user already runs costs
  it a track, not a source: the limit is what a user may pin);
- every source this user's request opened that nobody holds now: it runs
  until its idle grace ends, and asking for sizes and stopping them at once
  must not start more capture processes than the limit;
- the parent of any of those when this user's request opened it (a derived
  size pins the native mode it reads);
- every generator of its processes (`mediabroker.daemon.generators`), read
  or not: it runs as long as its writer wants.

A request that needs a source its user is not charged for yet is checked
before anything starts, against that charge plus what the user's requests
in flight reserved (one reservation per distinct source, so two requests
for the same new size count once). Track counts are `TrackTable`'s.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from mediabroker.config import BrokerConfig
from mediabroker.config_values import MIB
from mediabroker.daemon.access import describe_uid, over_limit
from mediabroker.daemon.sessions import Session
from mediabroker.daemon.tracks import TrackRecord, TrackTable
from mediabroker.sources import Source
from mediabroker.sources.source import SourceKey
from mediastream.errors import NotReadableError

__all__ = ["SourceQuota"]


class SourceQuota:
    """``limits.sources_per_user`` and ``limits.shm_per_user_mib``, over the
    sources of ``sources`` (the `SourceManager`)."""

    def __init__(self, config: BrokerConfig, tracks: TrackTable, sources: Iterable[Source]) -> None:
        self.config = config
        self._tracks = tracks
        self._sources = sources
        self._pending: defaultdict[int, dict[SourceKey, int]] = defaultdict(dict)

    def charged(self, uid: int, moving: TrackRecord | None = None) -> set[Source]:
        """The sources ``uid`` is charged for; without ``moving``'s hold when
        that track is about to leave its source (applyConstraints)."""
        held = {t.source for t in self._tracks.of_uid(uid) if t is not moving}
        # A generator's source costs its owner while it lives, watched or not.
        idle = {s for s in self._sources if s.opener == uid and (not s.leases or s.plan.produced)}
        own = held | idle
        return own | {s.parent for s in own if s.parent is not None and s.parent.opener == uid}

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
    def reserve(
        self,
        session: Session,
        key: SourceKey,
        ring_bytes: int,
        moving: TrackRecord | None = None,
    ) -> Iterator[None]:
        """Hold room for the source ``key`` (a ring of ``ring_bytes``) while it
        is acquired; raise `NotReadableError` naming the limit when the user
        has no room. Free when the user is charged for that source already,
        or a request of its own in flight reserved it."""
        uid = session.peer.uid
        pending = self._pending[uid]
        charged = self.charged(uid, moving)
        if key in pending or any(s.plan.key == key for s in charged):
            yield
            return
        count = len(charged) + len(pending)
        used = sum(s.ring_bytes for s in charged) + sum(pending.values())
        self._check(session, count, used, ring_bytes)
        pending[key] = ring_bytes
        try:
            yield
        finally:
            del pending[key]
            if not pending:
                del self._pending[uid]

    def _check(self, session: Session, sources: int, used: int, needed: int) -> None:
        config, peer, user = self.config, session.peer, describe_uid(session.peer.uid)
        if sources >= config.sources_per_user:
            what = (
                f"user {user} has {sources} distinct sources running (sizes, rates or "
                "formats), the limit"
            )
            reason = over_limit(
                config, peer, "a source", "sources_per_user", config.sources_per_user, what
            )
            raise NotReadableError(
                f"{reason}: ask for a size its tracks already read, stop some, or ask the "
                "administrator to raise it"
            )
        share = self.shm_limit_bytes()
        # With the default share a user's first ring always passes (the
        # budget and /dev/shm's own room still apply): one large stream on a
        # small /dev/shm is no abuse, and its error says what is short.
        first = sources == 0 and config.shm_per_user_bytes is None
        if not first and used + needed > share:
            what = (
                f"a new ring of {needed / MIB:.1f} MiB would take user {user}'s rings to "
                f"{(used + needed) / MIB:.1f} MiB, over its share of shared memory"
            )
            shown = f"{share / MIB:.1f}"
            reason = over_limit(config, peer, "a ring", "shm_per_user_bytes", shown, what)
            raise NotReadableError(
                f"{reason}: ask for smaller frames, stop other streams, or ask the "
                "administrator to raise it"
            )
