"""In-process sources: a `SourceManager` on the test's own asyncio loop.

For the unit tests of tests/broker/sources: no daemon, no control socket;
the capture processes are real (the fake camera) and the listener is a
`Recorder`. Everything runs inside `asyncio.run`, so the waits here are
asynchronous and bounded, never sleeps of a fixed length.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import zmq.asyncio

from mediabroker.config import BrokerConfig
from mediabroker.sources import Source, SourceManager
from support import unique_prefix

__all__ = ["Recorder", "eventually", "running_manager", "scratch_config"]

POLL_S = 0.01  # for `eventually`: conditions with nothing to await


class Recorder:
    """A `SourceListener` that notes each call as ``(event, source id)``:
    ``("mute", "1-video-...")``, ``("unmute", ...)``, ``("ended", ...)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.reasons: list[str] = []  # of the ended events
        self._changed = asyncio.Event()

    def source_muted(self, source: Source, muted: bool) -> None:
        self._note("mute" if muted else "unmute", source)

    def source_ended(self, source: Source, reason: str) -> None:
        self.reasons.append(reason)
        self._note("ended", source)

    def source_pinned(self, source: Source, asking: str) -> bool:
        return False

    def _note(self, event: str, source: Source) -> None:
        self.events.append((event, source.id))
        self._changed.set()

    def kinds(self) -> list[str]:
        return [event for event, _ in self.events]

    async def until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Wait until ``predicate()`` holds, re-checked at each event; fail
        with the events seen after ``timeout_s``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate():
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._changed.wait(), max(remaining, 0))
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout_s:g} s waiting for {what}; saw {self.events}"
                ) from None


async def eventually(predicate: Callable[[], Any], timeout_s: float, what: str) -> None:
    """`support.wait_until` for the loop: poll ``predicate`` without blocking it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def scratch_config(tmp_path: Path, **overrides: Any) -> BrokerConfig:
    """A configuration with its own run dir and segment prefix (which the
    accounting fixture watches)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o750, exist_ok=True)
    return BrokerConfig(run_dir=run_dir, shm_prefix=unique_prefix(), **overrides)


@contextlib.asynccontextmanager
async def running_manager(config: BrokerConfig, listener: Recorder) -> AsyncIterator[SourceManager]:
    """A bound `SourceManager` serving its status inbox and watching progress,
    as the daemon runs it; on exit every source is closed (processes
    stopped, rings unlinked) and the ZeroMQ context ended."""
    ctx = zmq.asyncio.Context()
    manager = SourceManager(config, listener, ctx)
    manager.bind()
    loops = [
        asyncio.create_task(manager.serve_status()),
        asyncio.create_task(manager.watch_progress()),
    ]
    try:
        yield manager
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await manager.close_all()
        ctx.term()
