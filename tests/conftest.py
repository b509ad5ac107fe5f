"""Fixtures: a real daemon per test, failing the test on anything it leaks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for source_root in ("client", "broker"):  # run from a checkout without installing
    if str(REPO / source_root) not in sys.path:
        sys.path.insert(0, str(REPO / source_root))

from mediastream import MediaDevices, MediaStreamTrack  # noqa: E402
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


@pytest.fixture(scope="session")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the tests that only need tracks, checked for leaks at the end."""
    process = Daemon(tmp_path_factory.mktemp("shared") / "run")
    try:
        process.wait_ready()
        yield process
        status = process.terminate()
        assert status == 0, f"daemon exited with {status}; log:\n{process.log()}"
        assert_nothing_left(process)
    finally:
        process.close()


@pytest.fixture(scope="session")
def shared_devices(shared_daemon: Daemon) -> Iterator[MediaDevices]:
    with MediaDevices(shared_daemon.run_dir, name="tests") as devices:
        yield devices


@pytest.fixture
def make_track(shared_devices: MediaDevices) -> Iterator[Callable[[str], MediaStreamTrack]]:
    """``make_track(kind)``: a new live daemon track of ``kind`` ("audio" or "video").
    Every track it made (and their clones) is stopped after the test."""
    made: list[MediaStreamTrack] = []

    def make(kind: str) -> MediaStreamTrack:
        track = shared_devices.getUserMedia({kind: True}).getTracks()[0]
        made.append(track)
        return track

    yield make
    for track in made:
        track.stop()
    for track in list(shared_devices._tracks.values()):
        track.stop()  # clones a test made and kept
