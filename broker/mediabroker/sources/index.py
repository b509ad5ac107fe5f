"""The open sources, by mode and by id, and how they relate: which runs a
device, which derive from which, which a user opened. `SourceManager`
adds and removes them; everything else only asks."""

from __future__ import annotations

from collections.abc import Iterator

from mediabroker.devices import Device
from mediabroker.sources.source import Source, SourceKey

__all__ = ["SourceIndex"]


class SourceIndex:
    def __init__(self) -> None:
        self._by_key: dict[SourceKey, Source] = {}
        self._by_id: dict[str, Source] = {}

    def __iter__(self) -> Iterator[Source]:
        return iter(list(self._by_id.values()))

    def add(self, source: Source) -> None:
        self._by_key[source.plan.key] = source
        self._by_id[source.id] = source

    def remove(self, source: Source) -> None:
        """Forget ``source`` (a newer source of its mode stays). Idempotent."""
        if self._by_key.get(source.plan.key) is source:
            del self._by_key[source.plan.key]
        self._by_id.pop(source.id, None)

    def clear(self) -> list[Source]:
        """Forget every source; returns them."""
        sources = list(self._by_id.values())
        self._by_key.clear()
        self._by_id.clear()
        return sources

    def by_id(self, source_id: str) -> Source | None:
        return self._by_id.get(source_id)

    def live(self, key: SourceKey) -> Source | None:
        """The source of this mode, unless it has finished."""
        source = self._by_key.get(key)
        return None if source is None or source.state.finished else source

    def native_of(self, device: Device) -> Source | None:
        """The source running ``device`` in its hardware mode, if one runs."""
        for source in self._by_id.values():
            if source.device.device_id == device.device_id and source.parent is None:
                if not source.state.finished:
                    return source
        return None

    def derived_from(self, source: Source) -> list[Source]:
        return [s for s in self._by_id.values() if s.parent is source]

    def family(self, source: Source) -> list[Source]:
        """``source`` and the sources derived from it."""
        return [source, *self.derived_from(source)]

    def opened_by(self, uid: int) -> int:
        """How many open sources ``uid``'s requests opened."""
        return sum(1 for s in self._by_id.values() if s.opener == uid)

    def in_use(self, source: Source) -> bool:
        """Whether a track (a clone, a mirror) holds ``source`` or a source
        derived from it. Derived sources lingering in their idle grace hold
        their parent's lease, but nobody listens: no request has to fit them."""
        children = self.derived_from(source)
        own = source.leases - {child.parent_lease for child in children}
        return bool(own) or any(self.in_use(child) for child in children)
