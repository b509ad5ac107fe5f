"""Another local user's files under the daemon's segment prefix in /dev/shm.

Anyone may create files in /dev/shm, and the prefix is no secret. Before the
sweep and the budget looked only at our own regular files, a FIFO named
with the prefix hung the daemon's start for good (its stale-ring sweep
opened it), the sweep unlinked other users' files, and a huge sparse file
made the shm budget refuse every ring. The files are made by ``nobody``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mediastream import MediaDevices
from mediastream.ring import SHM_DIR, Ring, VideoFormat
from support import Daemon, segments, unique_prefix, wait_until
from support.users import as_nobody, needs_root


@pytest.fixture
def planted() -> Iterator[tuple[str, list[Path]]]:
    """A prefix, and under it in /dev/shm, all made by nobody: a FIFO, a
    symlink to it, an empty file and a 4 GiB sparse file."""
    prefix = unique_prefix()
    names = ["fifo", "link", "empty", "sparse"]
    paths = [SHM_DIR / f"{prefix}{name}" for name in names]
    fifo, link, empty, sparse = paths
    as_nobody(f"mkfifo {fifo}; ln -s {fifo} {link}; : > {empty}; truncate -s 4G {sparse}")
    try:
        yield prefix, paths
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


@needs_root
def test_other_users_files_under_the_prefix_neither_block_nor_count(
    tmp_path: Path, planted: tuple[str, list[Path]]
) -> None:
    """1. nobody plants a FIFO, a symlink to it, an empty file and a 4 GiB
       sparse file under the prefix of a daemon with a 64 MiB shm budget.
    2. The daemon starts (READY=1) and serves a camera: the budget counted
       none of them.
    3. It stopped cleanly and left every planted file where it was, and said
       in its log that it left them alone."""
    prefix, paths = planted
    daemon = Daemon(tmp_path / "run", prefix=prefix, config="[rings]\nshm_budget_mib = 64\n")
    try:
        daemon.wait_ready(timeout=15.0)
        with MediaDevices(daemon.run_dir, name="after the plant") as devices:
            stream = devices.getUserMedia({"video": {"width": 320, "height": 240}})
            [track] = stream.getVideoTracks()
            assert track.read(timeout=5.0).seq >= 0
            track.stop()
        assert daemon.terminate() == 0, daemon.log()
        wait_until(
            lambda: segments(prefix) == sorted(p.name for p in paths),
            10,
            "only the planted files under the prefix once the daemon stopped",
            lambda: segments(prefix),
        )
        log = daemon.log()
        assert all(f"{p} carries this daemon's segment prefix" in log for p in paths), log
    finally:
        daemon.close()


def test_the_sweep_removes_our_dead_rings_and_leaves_our_other_files(tmp_path: Path) -> None:
    """Files of the daemon's own user under its prefix, before it starts: a
    ring whose writer and owner are gone, a ring cut short at creation (its
    header never written: all zeros) and a file that is no ring. 1. The
    sweep removes the first two. 2. It leaves the third alone (the ring
    magic, not only the owner, says a file is a ring) and says so."""
    prefix = unique_prefix()
    dead = Ring.create(prefix + "dead", VideoFormat(16, 8), 2)
    dead.set_pids(owner=2**22 + 1, writer=2**22 + 2)  # above pid_max: never alive
    dead.close()
    cut_short = SHM_DIR / (prefix + "cut-short")
    cut_short.write_bytes(bytes(4096))
    other = SHM_DIR / (prefix + "notes")
    other.write_bytes(b"not a ring, but ours")
    daemon = Daemon(tmp_path / "run", prefix=prefix)
    try:
        daemon.wait_ready()
        assert segments(prefix) == [other.name], segments(prefix)
        assert f"{other} is a file of ours but not a ring: left alone" in daemon.log()
        assert daemon.terminate() == 0, daemon.log()
        assert other.read_bytes() == b"not a ring, but ours"
    finally:
        daemon.close()
        for name in ("dead", "cut-short", "notes"):
            (SHM_DIR / (prefix + name)).unlink(missing_ok=True)
