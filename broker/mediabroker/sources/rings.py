"""The shared-memory budget: a cap on what this daemon's rings may take.

/dev/shm is shared with everything else on the machine (and is 64 MiB in a
default container), so ``rings.shm_budget_mib`` caps the sum of the segments
under this daemon's prefix. A ring that would go over is refused before it
is created, with `NotReadableError` saying what it needs and what is left;
the room left in /dev/shm itself is checked by `Ring.create`.
"""

from __future__ import annotations

from mediabroker.config import KEY_OF_FIELD, BrokerConfig
from mediastream.errors import NotReadableError
from mediastream.ring import RingFormat, ring_bytes

__all__ = ["check_budget", "used_bytes"]

MIB = 1024 * 1024


def used_bytes(config: BrokerConfig) -> int:
    """Bytes held now by the segments under this daemon's prefix."""
    total = 0
    for path in config.shm_dir.glob(config.shm_prefix + "*"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue  # unlinked while we looked
    return total


def check_budget(config: BrokerConfig, name: str, fmt: RingFormat, slots: int) -> None:
    """Raise `NotReadableError` when a new ring would take this daemon's rings
    over the configured budget; no-op without a budget."""
    budget = config.shm_budget_bytes
    if budget is None:
        return
    needed, used = ring_bytes(fmt, slots), used_bytes(config)
    if used + needed <= budget:
        return
    where = f" in {config.config_path}" if config.config_path else ""
    raise NotReadableError(
        f"the ring {name!r} needs {needed / MIB:.1f} MiB but the shared-memory budget "
        f"({KEY_OF_FIELD['shm_budget_bytes']}{where}) is {budget / MIB:.1f} MiB, of which "
        f"{used / MIB:.1f} MiB is in use; ask for smaller frames, stop other streams, "
        "or raise the budget"
    )
