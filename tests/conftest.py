"""Fixtures: a real daemon per test, failing the test on anything it leaks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for source_root in ("client", "broker"):  # run from a checkout without installing
    if str(REPO / source_root) not in sys.path:
        sys.path.insert(0, str(REPO / source_root))

from support import Daemon, segments, wait_until  # noqa: E402


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A ready daemon on fake devices. At teardown it must stop on SIGTERM with
    status 0 (unless the test killed it), and leave no segment, socket or
    process behind."""
    process = Daemon(tmp_path / "run")
    try:
        process.wait_ready()
        yield process
        if process.process.poll() is None:
            status = process.terminate()
            assert status == 0, f"daemon exited with {status}; log:\n{process.log()}"
        assert_nothing_left(process)
    finally:
        process.close()


def assert_nothing_left(process: Daemon) -> None:
    wait_until(
        lambda: not process.living_children(),
        10,
        "the daemon's children to exit",
        process.living_children,
    )
    wait_until(
        lambda: not segments(process.prefix),
        10,
        f"no /dev/shm segment under {process.prefix!r}",
        lambda: segments(process.prefix),
    )
    sockets = sorted(p.name for p in process.run_dir.glob("*")) if process.run_dir.exists() else []
    if process.process.returncode == 0:
        assert not sockets, f"sockets left in the run dir: {sockets}"
