"""Fixtures: a real daemon per test, failing the test on anything it leaks.

Accounting (`accounting`, on every test): the test process's open file
descriptors, its child processes and the /dev/shm segments of this run are
recorded before each test and compared after it; anything new that is still
there a few seconds later fails the test (then it is killed or unlinked, so
the next test starts clean). What is left out, and why:

- Whatever a daemon, fixture or process that outlives the test holds: fds,
  processes and segments that existed before the test are the baseline; the
  children of a process that existed before (the session's `shared_daemon`
  starts and stops capture processes as tests come and go) and the segments
  of a `Daemon` alive before the test are that fixture's to check, and each
  daemon fixture does at its own teardown.
- multiprocessing's resource tracker and the pipe to it: started by the first
  ``spawn`` of the run and kept for the rest of it, by design.

- File descriptors after a failed test: the traceback pytest keeps for its
  report holds the test's frames, and with them any ring a frame maps.

No tolerance otherwise: the comparison waits (bounded) for cleanups that
finish asynchronously (libzmq closes a socket's fds on its reaper thread; a
killed process takes a moment to go; a mapping, which holds an fd of its
own, goes when the garbage collector frees the cycle through an exception's
traceback that keeps a frame alive), then fails on any difference. The
fds are compared by number and target, so a leaked socket is caught even if
the count is unchanged.
"""

from __future__ import annotations

import gc
import multiprocessing.resource_tracker
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
for source_root in ("client", "broker"):  # run from a checkout without installing
    if str(REPO / source_root) not in sys.path:
        sys.path.insert(0, str(REPO / source_root))

from mediastream import MediaDevices, MediaStream, MediaStreamTrack  # noqa: E402
from mediastream.ring import SHM_DIR, Ring  # noqa: E402
from support import FIGURES, Daemon, segments, wait_until  # noqa: E402

ACCOUNTING_WAIT_S = 5.0  # for cleanups that finish asynchronously
# Segment names of this run: support.unique_prefix() and test_ring's PREFIX.
RUN_PREFIXES = (f"mbtest{os.getpid()}-", f"mbtest-{os.getpid()}-")


@dataclass(frozen=True)
class Holdings:
    """What the test process holds at one moment."""

    fds: dict[int, str]  # fd -> what it refers to (readlink)
    children: dict[int, float]  # pid -> create time, so a reused pid is a new process
    segments: frozenset[str]


def _fds() -> dict[int, str]:
    fds = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue  # the directory listing's own fd, closed already
    tracker_fd = multiprocessing.resource_tracker._resource_tracker._fd  # type: ignore[attr-defined]
    fds.pop(tracker_fd, None)  # the pipe to the tracker: opened with the first spawn, kept
    return fds


def _children() -> dict[int, psutil.Process]:
    tracker = multiprocessing.resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    return {p.pid: p for p in psutil.Process().children(recursive=True) if p.pid != tracker}


def _create_time(process: psutil.Process) -> float:
    try:
        return process.create_time()
    except psutil.Error:
        return 0.0


def _run_segments(excluded: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        path.name
        for prefix in RUN_PREFIXES
        for path in SHM_DIR.glob(prefix + "*")
        if not path.name.startswith(excluded)
    )


def _holdings(excluded: tuple[str, ...]) -> Holdings:
    children = {pid: _create_time(p) for pid, p in _children().items()}
    return Holdings(_fds(), children, _run_segments(excluded))


def _new_processes(before: Holdings) -> list[psutil.Process]:
    """Children started during the test, less those of processes that outlive it."""
    me = os.getpid()
    found = []
    for pid, process in _children().items():
        if before.children.get(pid) == _create_time(process):
            continue
        try:
            ancestors = [p.pid for p in process.parents()]
        except psutil.Error:
            continue  # gone while we looked
        lineage = ancestors[: ancestors.index(me)] if me in ancestors else ancestors
        if not any(before.children.get(a) is not None for a in lineage):
            found.append(process)
    return found


def _shared_doorbell(target: str, excluded: tuple[str, ...]) -> bool:
    """The doorbell FIFO of a MediaDevices that outlives the test (the
    shared daemon's): made at its first wait, kept until it closes."""
    name = Path(target.removesuffix(" (deleted)")).name
    return target.startswith(str(SHM_DIR)) and name.startswith(excluded) and ".bell." in name


def _leaks(before: Holdings, excluded: tuple[str, ...], fds: bool) -> dict[str, list[str]]:
    leaks: dict[str, list[str]] = {}
    new_fds = {
        fd: target
        for fd, target in _fds().items()
        if before.fds.get(fd) != target and not _shared_doorbell(target, excluded)
    }
    if fds and new_fds:
        leaks["file descriptors"] = [f"{fd} -> {t}" for fd, t in sorted(new_fds.items())]
    processes = []
    for process in _new_processes(before):
        try:
            processes.append(f"{process.pid} {process.status()} {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    if processes:
        leaks["child processes"] = processes
    new_segments = sorted(_run_segments(excluded) - before.segments)
    if new_segments:
        leaks[f"segments in {SHM_DIR}"] = new_segments
    return leaks


def _clean_up(before: Holdings, excluded: tuple[str, ...]) -> None:
    """Kill and unlink what a failed test left, so that the next one starts clean."""
    for process in _new_processes(before):
        try:
            process.kill()
            process.wait(5)
        except psutil.Error:
            continue
    for name in _run_segments(excluded) - before.segments:
        Ring.unlink(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, for `accounting`."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def accounting(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves an fd, a child process or a segment behind
    (see the module docstring for what is left out). After a failure only
    processes and segments count: the traceback pytest keeps for the report
    holds the test's frames, and so their mappings' fds."""
    excluded = tuple(daemon.prefix for daemon in Daemon.LIVE)  # outlive the test
    before = _holdings(excluded)
    yield
    call = getattr(request.node, "report_call", None)
    fds = call is None or not call.failed
    deadline = time.monotonic() + ACCOUNTING_WAIT_S
    leaks = _leaks(before, excluded, fds)
    if leaks:
        gc.collect()  # a frame kept by a cycle (an exception's traceback) holds its mapping
    while leaks and time.monotonic() < deadline:
        time.sleep(0.05)
        leaks = _leaks(before, excluded, fds)
    if leaks:
        _clean_up(before, excluded)
        details = "; ".join(f"{what}: {items}" for what, items in leaks.items())
        pytest.fail(f"the test left behind {details}", pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the reliability tests count, for the README."""
    if FIGURES:
        terminalreporter.section("figures")
        for name, amount in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {amount:g}")


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


Gum = Callable[[Mapping[str, Any]], MediaStream]


@pytest.fixture
def gum(shared_devices: MediaDevices) -> Iterator[Gum]:
    """``gum(constraints)``: getUserMedia on the shared daemon. Every track it
    gave out, and any clone left live, is stopped after the test."""
    made: list[MediaStreamTrack] = []

    def call(constraints: Mapping[str, Any]) -> MediaStream:
        stream = shared_devices.getUserMedia(constraints)
        made.extend(stream.getTracks())
        return stream

    yield call
    for track in [*made, *shared_devices._tracks.values()]:
        track.stop()


@pytest.fixture
def own_devices(daemon: Daemon) -> Iterator[MediaDevices]:
    """A MediaDevices on a daemon of this test's own: its devices may change,
    and no source left open by another test shapes what the camera can do."""
    with MediaDevices(daemon.run_dir, name="conformance") as devices:
        yield devices
