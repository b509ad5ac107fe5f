"""The source state machine in-process, with real capture processes (the fake
camera) and a recording listener: which changes mute, unmute or end the
tracks, and which stay silent."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mediabroker.devices.fakes import fake_camera
from mediabroker.sources import Lease, SourceManager, SourceState
from mediabroker.sources.policy import RestartPolicy
from mediastream.ring import VideoFormat
from support import segments
from support.sources import Recorder, running_manager, scratch_config

EVENT_TIMEOUT_S = 15.0
CAMERA = fake_camera("0", "Fake camera (test pattern)")
Scenario = Callable[[SourceManager, Lease, Recorder], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, **config: Any) -> None:
    """Acquire the fake camera at 160x120, 30 fps, run ``scenario``, release,
    close everything; no ring may be left."""

    async def main() -> None:
        settings = scratch_config(tmp_path, **config)
        listener = Recorder()
        async with running_manager(settings, listener) as manager:
            lease = await manager.acquire(CAMERA, VideoFormat(160, 120), 30.0, "track:test")
            try:
                await scenario(manager, lease, listener)
            finally:
                lease.release()
        assert segments(settings.shm_prefix) == []

    asyncio.run(main())


def test_the_first_start_is_silent_a_crash_mutes_and_the_restart_unmutes(tmp_path: Path) -> None:
    """1. The source goes STARTING -> LIVE: nobody is told (no track has seen it yet).
    2. Its capture process is killed: one mute, then one unmute once the new
       process delivers; the source is live again under a new pid."""

    async def scenario(manager: SourceManager, lease: Lease, listener: Recorder) -> None:
        source = lease.source
        assert source.state is SourceState.LIVE and not source.muted
        assert listener.events == []
        first = source.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await listener.until(lambda: len(listener.events) >= 2, EVENT_TIMEOUT_S, "mute, unmute")
        assert listener.events == [("mute", source.id), ("unmute", source.id)]
        assert source.state is SourceState.LIVE and source.pid not in (None, first)

    run(tmp_path, scenario)


def test_ending_a_source_ends_its_tracks_without_a_mute(tmp_path: Path) -> None:
    async def scenario(manager: SourceManager, lease: Lease, listener: Recorder) -> None:
        source = lease.source
        source.end("unplugged")
        source.end("again")  # idempotent
        assert source.state is SourceState.ENDED and source.state.finished
        assert listener.events == [("ended", source.id)] and listener.reasons == ["unplugged"]
        assert manager.native_of(CAMERA) is None  # a finished source is not shared

    run(tmp_path, scenario)


def test_a_suspended_source_mutes_once_and_its_first_frame_after_resume_unmutes(
    tmp_path: Path,
) -> None:
    """1. suspend(): SUSPENDED, one mute, the capture process is stopped; its
       exit is no crash.
    2. resume(): RESTARTING (still muted: no second mute), then LIVE at the
       first frame, with one unmute."""

    async def scenario(manager: SourceManager, lease: Lease, listener: Recorder) -> None:
        source = lease.source
        stopped = source.pid
        await source.suspend()
        assert (source.state, source.muted) == (SourceState.SUSPENDED, True)
        assert listener.events == [("mute", source.id)]
        source.resume(source.plan)
        assert (source.state, source.muted) == (SourceState.RESTARTING, True)
        await listener.until(lambda: len(listener.events) >= 2, EVENT_TIMEOUT_S, "unmute")
        assert listener.events == [("mute", source.id), ("unmute", source.id)]
        assert source.state is SourceState.LIVE and source.pid != stopped

    run(tmp_path, scenario)


def test_a_shrunk_restart_policy_ends_the_source_at_its_first_crash(tmp_path: Path) -> None:
    async def scenario(manager: SourceManager, lease: Lease, listener: Recorder) -> None:
        source = lease.source
        assert source.pid is not None
        os.kill(source.pid, signal.SIGKILL)
        await listener.until(lambda: bool(listener.events), EVENT_TIMEOUT_S, "the source to end")
        assert listener.events == [("ended", source.id)]  # no mute on the way to ENDED
        assert listener.reasons == [
            "capture failed 1 times in 30 s; last: capture process exited with status -9"
        ]

    run(tmp_path, scenario, restart_policy=RestartPolicy(max_crashes=1))


def test_a_capture_process_that_stops_delivering_is_killed_and_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The stall watch, shrunk to 0.2 s: a capture process frozen with SIGSTOP
    delivers nothing, is killed with a log line saying so, and its
    replacement unmutes the source."""

    async def scenario(manager: SourceManager, lease: Lease, listener: Recorder) -> None:
        source = lease.source
        frozen = source.pid
        assert frozen is not None
        os.kill(frozen, signal.SIGSTOP)
        await listener.until(lambda: len(listener.events) >= 2, EVENT_TIMEOUT_S, "mute, unmute")
        assert listener.kinds() == ["mute", "unmute"]
        assert source.state is SourceState.LIVE and source.pid != frozen
        assert f"source {source.id}: capture process delivered nothing for" in caplog.text

    with caplog.at_level(logging.WARNING, logger="mediabroker.sources"):
        run(tmp_path, scenario, stall_s=0.2)


def test_a_larger_request_suspends_the_source_and_it_derives_from_the_new_one(
    tmp_path: Path,
) -> None:
    """1. A second acquire at 320x240 re-opens the camera: the 160x120 source
       is suspended (one mute) while the new native source starts.
    2. The old source reads the new one now (it is its parent, holding a
       lease on it) and unmutes at its first derived frame; the new native
       source, seen only from STARTING to LIVE, is never muted."""

    async def scenario(manager: SourceManager, lease: Lease, listener: Recorder) -> None:
        old = lease.source
        larger = await manager.acquire(CAMERA, VideoFormat(320, 240), 30.0, "track:larger")
        try:
            native = larger.source
            assert manager.native_of(CAMERA) is native and old.parent is native
            assert native.holders == [f"source:{old.id}", "track:larger"]
            assert manager.family(native) == [native, old]
            await listener.until(lambda: len(listener.events) >= 2, EVENT_TIMEOUT_S, "unmute")
            assert listener.events == [("mute", old.id), ("unmute", old.id)]
            assert old.state is SourceState.LIVE and native.state is SourceState.LIVE
        finally:
            larger.release()

    run(tmp_path, scenario)
