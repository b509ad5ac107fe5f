"""Shared-memory housekeeping: the budget of this daemon's rings, and the
sweep of rings a killed daemon left behind.

/dev/shm is shared with everything else on the machine (and is 64 MiB in a
default container), so ``rings.shm_budget_mib`` caps the sum of the segments
under this daemon's prefix. A ring that would go over is refused before it
is created, with `NotReadableError` saying what it needs and what is left;
the room left in /dev/shm itself is checked by `Ring.create`.

A daemon killed with SIGKILL cannot unlink its rings; the next one on the
same prefix removes those whose owner and writer are both gone
(`sweep_stale_rings`, at start, once the run dir is locked).

Any local user may create files in /dev/shm, under our prefix too. Both
the sweep and the budget look only at regular files this daemon's user
owns (`own_segments`, from an lstat: a FIFO, a symlink or a device node is
never opened, so none can block the start; another user's file is never
counted nor unlinked). /dev/shm is sticky, so a file found ours stays ours.
The sweep also checks the ring magic: a file of ours that is no ring (and
no ring cut short at creation) is left alone.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from mediabroker.config import KEY_OF_FIELD, BrokerConfig
from mediabroker.config_values import MIB
from mediastream.errors import NotReadableError
from mediastream.results import read_results_pids
from mediastream.ring import AudioFormat, Ring, RingFormat, read_ring_pids, ring_bytes

__all__ = [
    "check_budget",
    "own_segments",
    "ring_slots",
    "sweep_stale_rings",
    "used_bytes",
]

log = logging.getLogger(__name__)


def own_segments(config: BrokerConfig) -> list[tuple[Path, os.stat_result]]:
    """This prefix's regular files that our user owns, with their lstat."""
    return [(path, info) for path, info in _prefixed(config) if _ours(info)]


def _prefixed(config: BrokerConfig) -> list[tuple[Path, os.stat_result]]:
    found = []
    for path in sorted(config.shm_dir.glob(config.shm_prefix + "*")):
        try:
            found.append((path, os.lstat(path)))
        except FileNotFoundError:
            continue  # unlinked while we looked
    return found


def _ours(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def ring_slots(config: BrokerConfig, fmt: RingFormat) -> int:
    """Slots of a ring for ``fmt``: frames for video, samples for audio."""
    if isinstance(fmt, AudioFormat):
        return int(fmt.sample_rate * config.audio_ring_s)
    return config.ring_slots


def used_bytes(config: BrokerConfig) -> int:
    """Bytes held now by this daemon's user's segments under its prefix."""
    return sum(info.st_size for _, info in own_segments(config))


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


def sweep_stale_rings(config: BrokerConfig) -> list[str]:
    """Unlink this prefix's segments whose owner and writer are both gone
    (left by a daemon that was killed). Returns the names removed."""
    removed = []
    for path, info in _prefixed(config):
        if not _ours(info):
            log.warning(
                "%s carries this daemon's segment prefix but is not a file of ours "
                "(mode %#o, uid %d): left alone",
                path,
                info.st_mode,
                info.st_uid,
            )
            continue
        pids = read_ring_pids(path.name, config.shm_dir) or read_results_pids(
            path.name, config.shm_dir
        )
        if pids is not None and any(pid and _pid_alive(pid) for pid in pids):
            continue
        if pids is None and not _creation_cut_short(path):
            log.warning("%s is a file of ours but not a ring: left alone", path)
            continue
        Ring.unlink(path.name, config.shm_dir)
        removed.append(path.name)
    if removed:
        log.info("removed %d stale segment(s): %s", len(removed), ", ".join(removed))
    return removed


def _creation_cut_short(path: Path) -> bool:
    """A segment whose ring header was never written (the daemon died inside
    `Ring.create`): empty, or its magic still zero. Anything else that is not
    a ring is left alone: the ring magic, not only the owner, says ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.read(fd, 8).strip(b"\x00") == b""
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An orphaned capture process can stay a zombie for long where PID 1 does
    # not reap (containers without an init): it maps nothing any more.
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[:1] == ["Z"]
