"""Supervising capture processes, from the daemon's main process.

A source is one device opened in one mode: its ring, its capture process
and its state; sources are shared between tracks and held by leases.

- `manager`: `SourceManager` (share by device and mode, acquire, idle
  close, re-open in a larger mode) and `Lease`;
- `source`: `Source` and its state machine, `SourceState`, `SourceListener`;
- `process`: `CaptureProcess`, the handle of one capture process;
- `policy`: `RestartPolicy` and `StallWatch`, pure, taking the time;
- `status`: the PULL socket capture processes report to;
- `rings`: the shared-memory budget and the sweep of stale rings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mediabroker.sources.manager import Lease, SourceManager
    from mediabroker.sources.rings import sweep_stale_rings
    from mediabroker.sources.source import Source, SourceListener, SourceState

__all__ = ["Lease", "Source", "SourceListener", "SourceManager", "SourceState", "sweep_stale_rings"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): config.py imports sources.policy for its defaults, and
    # the modules here import config; loading them all with the package
    # would make that a cycle at run time.
    if name in ("Lease", "SourceManager"):
        from mediabroker.sources import manager

        return getattr(manager, name)
    if name in ("Source", "SourceListener", "SourceState"):
        from mediabroker.sources import source

        return getattr(source, name)
    if name == "sweep_stale_rings":
        from mediabroker.sources import rings

        return rings.sweep_stale_rings
    raise AttributeError(f"module 'mediabroker.sources' has no attribute {name!r}")
