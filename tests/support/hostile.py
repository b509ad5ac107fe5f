"""Daemons another local user can reach, and that user's processes
(tests/support/attackers.py, which become nobody)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from support import ClientProcess, Daemon
from support.users import shared_dir


@contextmanager
def serving(base: Path, config: str, prefix: str | None = None) -> Iterator[Daemon]:
    """A ready daemon with ``config``, in ``base``/run. Leaving: it must still
    run, stop on SIGTERM with status 0 and leave nothing behind."""
    from conftest import assert_nothing_left  # the fixtures' own check

    daemon = Daemon(base / "run", config=config, prefix=prefix)
    try:
        daemon.wait_ready()
        yield daemon
        assert daemon.process.poll() is None, daemon.log()[-3000:]
        assert daemon.terminate() == 0, daemon.log()[-3000:]
        assert_nothing_left(daemon)
    finally:
        stop(daemon)


@contextmanager
def reachable_daemon(name: str, config: str) -> Iterator[Daemon]:
    """`serving`, in a directory every user may traverse (pytest's tmp_path
    is 0700): with ``config`` opening the socket, another user can connect."""
    with shared_dir(f"mb{name}-", 0o755) as base, serving(base, config) as daemon:
        yield daemon


def attacker(daemon: Daemon, mode: str, *args: object) -> ClientProcess:
    """tests/support/attackers.py ``mode`` against ``daemon``, as nobody."""
    return ClientProcess(mode, daemon.run_dir, *args, script="attackers.py")


def stop(daemon: Daemon) -> None:
    """After a failed test too: SIGTERM first, so that the daemon removes its
    rings and stops its capture processes (only the failure is reported)."""
    if daemon.process.poll() is None:
        with suppress(subprocess.TimeoutExpired):
            daemon.terminate()
    daemon.close()
