"""One descriptor per MediaDevices for every track: ``md.fileno()``,
``md.wait(tracks, timeout)`` and ``aread()`` with no thread, against a real
daemon, and what a dead reader leaves in the writer (nothing)."""

from __future__ import annotations

import asyncio
import os
import selectors
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mediastream import AudioData, MediaDevices, NotReadableError, VideoFrame
from mediastream.ring import SHM_DIR
from support import ClientProcess, Daemon, wait_until

SMALL = {"width": 160, "height": 120}


@pytest.fixture
def devices(daemon: Daemon) -> Iterator[MediaDevices]:
    with MediaDevices(daemon.run_dir, name="waiter") as md:
        yield md


def doorbells_held(pid: int) -> list[str]:
    """The doorbell FIFOs process ``pid`` has open."""
    found = []
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if ".bell." in target:
            found.append(target)
    return found


def capture_pids(devices: MediaDevices) -> dict[str, int]:
    return {s["kind"]: int(s["pid"]) for s in devices.broker_stats()["sources"]}


def test_wait_returns_the_tracks_that_have_news(devices: MediaDevices) -> None:
    """1. A camera and a microphone: wait gives back each one as its media
    arrives, through one descriptor. 2. Once read, a track has no news until
    its next frame: a zero timeout returns [] (at 5 fps, within a few tries)."""
    stream = devices.getUserMedia({"video": {**SMALL, "frameRate": 5}, "audio": True})
    video, audio = stream.getVideoTracks()[0], stream.getAudioTracks()[0]
    seen: set[str] = set()
    deadline = time.monotonic() + 5
    while seen != {"video", "audio"} and time.monotonic() < deadline:
        for track in devices.wait([video, audio], timeout=1.0):
            item = track.read(timeout=0)
            assert isinstance(item, VideoFrame if track.kind == "video" else AudioData)
            seen.add(track.kind)
    assert seen == {"video", "audio"}
    audio.stop()
    empty = 0
    for _ in range(5):
        video.read(timeout=1.0)
        empty += devices.wait([video], timeout=0) == []
    assert empty >= 3, "a track just read was reported with news"
    assert devices.wait([video], timeout=1.0) == [video]


def test_fileno_wakes_a_selector(devices: MediaDevices) -> None:
    """A foreign loop (selectors) wakes on md.fileno() when a frame comes,
    and the descriptor stays the same number."""
    track = devices.getUserMedia({"video": SMALL}).getVideoTracks()[0]
    fd = devices.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        for _ in range(3):
            devices.wait([track], timeout=0)  # drains
            track.read(timeout=1.0)
            assert selector.select(timeout=2.0), "no wake-up for the next frame"
    assert devices.fileno() == fd


def test_aread_needs_no_thread_and_cancels_cleanly(devices: MediaDevices) -> None:
    """1. Thirty aread()s of two tracks start no thread (no executor either).
    2. A cancelled aread leaves nothing waiting; the next one works.
    3. A track stopped while a coroutine waits ends its async for at once."""
    stream = devices.getUserMedia({"video": SMALL, "audio": True})
    video, audio = stream.getVideoTracks()[0], stream.getAudioTracks()[0]

    async def main() -> None:
        threads = threading.active_count()
        for _ in range(15):
            frame, block = await asyncio.gather(video.aread(2.0), audio.aread(2.0))
            assert isinstance(frame, VideoFrame) and isinstance(block, AudioData)
        assert threading.active_count() == threads
        assert asyncio.get_running_loop()._default_executor is None  # type: ignore[attr-defined]
        waiting = asyncio.ensure_future(video.aread(5.0))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert isinstance(await video.aread(2.0), VideoFrame)
        reader = asyncio.ensure_future(_drain(video))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        video.stop()
        await asyncio.wait_for(reader, 1.0)
        assert time.monotonic() - started < 0.2, "the stop did not wake the coroutine"

    asyncio.run(main())


async def _drain(track: object) -> None:
    async for _ in track:  # type: ignore[attr-defined]
        pass


def test_a_dead_reader_leaves_no_doorbell_in_the_writer(daemon: Daemon) -> None:
    """A client reading with aread is killed: the capture process, which held
    one doorbell of it, holds none soon after (the daemon drops it with the
    session; a write to a FIFO nobody reads would drop it too)."""
    with MediaDevices(daemon.run_dir, name="watcher") as md:
        reader = ClientProcess("async-reader", daemon.run_dir)
        try:
            assert reader.next()["event"] == "reading"
            pid = capture_pids(md)["video"]
            assert len(doorbells_held(pid)) == 1, doorbells_held(pid)
            reader.kill()
            wait_until(lambda: not doorbells_held(pid), 10, "the writer to drop the doorbell")
            assert psutil.pid_exists(pid)
        finally:
            reader.close()


def test_one_doorbell_per_process_and_nothing_in_dev_shm(devices: MediaDevices) -> None:
    """Two tracks on two sources ring the same FIFO, each writer holding it
    once; its name is gone from /dev/shm as soon as the daemon opened it."""
    stream = devices.getUserMedia({"video": SMALL, "audio": True})
    devices.wait(stream.getTracks(), timeout=2.0)
    pids = capture_pids(devices)

    def held() -> dict[str, list[str]]:  # each writer takes it between two frames
        return {kind: doorbells_held(pid) for kind, pid in pids.items()}

    wait_until(lambda: all(held().values()), 5, "both writers to hold the doorbell", held)
    assert len(held()["video"]) == 1 and held()["video"] == held()["audio"], held()
    assert not list(SHM_DIR.glob("*.bell.*")), list(SHM_DIR.glob("*.bell.*"))


def test_a_doorbell_must_be_the_askers_own_fifo(devices: MediaDevices, tmp_path: Path) -> None:
    """registerDoorbell refuses a regular file, a symlink, another user's
    FIFO and a name outside the daemon's prefix; the files are left as they were."""
    prefix = devices._live_connection().shm_prefix
    made: list[Path] = []

    def planted(kind: str) -> str:
        path = SHM_DIR / f"{prefix}bell.test-{kind}"
        made.append(path)
        if kind == "file":
            path.write_bytes(b"")
        elif kind == "symlink":
            path.symlink_to(tmp_path / "elsewhere")
        else:
            os.mkfifo(path)
            os.chown(path, 65534, 65534)
        return path.name

    try:
        for kind in ("file", "symlink", "nobody"):
            with pytest.raises(NotReadableError, match="doorbell"):
                devices._connection_request("registerDoorbell", {"fifo": planted(kind)})
        with pytest.raises(NotReadableError, match="not a doorbell name"):
            devices._connection_request("registerDoorbell", {"fifo": "other.bell.x"})
        assert all(path.is_symlink() or path.exists() for path in made)
    finally:
        for path in made:
            path.unlink(missing_ok=True)
