"""Leases in-process: who holds a source, double releases, the idle close.

The sources here are never started (no ring, no capture process): leases
only count holders, and closing an unstarted source is a state change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from mediabroker.capture.backend import BackendSpec
from mediabroker.devices.fakes import fake_camera
from mediabroker.sources import Source, SourceManager, SourceState
from mediabroker.sources.source import SourcePlan
from mediastream.errors import NotReadableError
from mediastream.ring import VideoFormat
from support.sources import Recorder, eventually, running_manager, scratch_config

IDLE_CLOSE_S = 0.05
Scenario = Callable[[SourceManager, Source], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        config = scratch_config(tmp_path, idle_close_s=IDLE_CLOSE_S)
        listener = Recorder()
        async with running_manager(config, listener) as manager:
            plan = SourcePlan(
                fake_camera("0", "cam"), VideoFormat(64, 48), 30.0, BackendSpec("fake-camera")
            )
            source = Source("1-test", plan, config, listener, "ipc://unused")
            try:
                await scenario(manager, source)
            finally:
                await source.close()
                assert isinstance(source.started.exception(), NotReadableError)
            assert listener.events == []  # leases alone never mute or end

    asyncio.run(main())


def test_holders_are_listed_and_a_shared_lease_adds_one(tmp_path: Path) -> None:
    async def scenario(manager: SourceManager, source: Source) -> None:
        track = manager.lease(source, "track:b")
        clone = track.share("track:a")
        assert source.holders == ["track:a", "track:b"]
        assert clone.source is source and clone.holder == "track:a" and not clone.released
        track.release()
        clone.release()
        assert source.holders == []

    run(tmp_path, scenario)


def test_a_double_release_is_harmless(tmp_path: Path) -> None:
    """The second release changes nothing: the other holder keeps the source."""

    async def scenario(manager: SourceManager, source: Source) -> None:
        first, second = manager.lease(source, "track:1"), manager.lease(source, "track:2")
        first.release()
        first.release()
        assert first.released and source.holders == ["track:2"]
        assert source.state is SourceState.STARTING
        second.release()

    run(tmp_path, scenario)


def test_the_last_release_starts_the_idle_close(tmp_path: Path) -> None:
    async def scenario(manager: SourceManager, source: Source) -> None:
        first, second = manager.lease(source, "track:1"), manager.lease(source, "track:2")
        first.release()
        second.release()
        await eventually(lambda: source.state is SourceState.CLOSED, 5, "the idle source to close")
        second.release()  # long after: still harmless

    run(tmp_path, scenario)


def test_a_lease_repr_says_who_holds_what(tmp_path: Path) -> None:
    async def scenario(manager: SourceManager, source: Source) -> None:
        lease = manager.lease(source, "track:1")
        assert repr(lease) == "<Lease track:1 on 1-test held>"
        assert "holders=1" in repr(source)
        lease.release()
        assert repr(lease) == "<Lease track:1 on 1-test released>"

    run(tmp_path, scenario)
