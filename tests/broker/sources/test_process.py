"""CaptureProcess, the process handle, with a real fake-camera capture process:
stop is SIGTERM then SIGKILL after the deadline, kill logs why, the owner
hears of each exit once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from mediabroker.capture.backend import BackendSpec
from mediabroker.capture.main import CaptureSpec
from mediabroker.sources.process import CaptureProcess
from mediabroker.sources.status import CaptureStatus
from mediastream.paths import endpoint
from mediastream.ring import Ring, VideoFormat
from support import unique_prefix

READY_TIMEOUT_S = 15.0


class Exits:
    """The owner's side: every exit it was told of."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []
        self.exited = asyncio.Event()

    def __call__(self, process: CaptureProcess) -> None:
        assert not process.running
        self.seen.append(process.exitcode)
        self.exited.set()


@asynccontextmanager
async def ready_process(tmp_path: Path) -> AsyncIterator[tuple[CaptureProcess, Exits]]:
    """A fake-camera capture process on a ring of its own, once it said ready."""
    name = unique_prefix() + "proc"
    ring = Ring.create(name, VideoFormat(64, 48), 4)
    ctx = zmq.asyncio.Context()
    status = ctx.socket(zmq.PULL)
    status_endpoint = endpoint(tmp_path, "status")
    status.bind(status_endpoint)
    spec = CaptureSpec(
        "proc",
        name,
        BackendSpec("fake-camera"),
        30.0,
        status_endpoint,
        os.getpid(),
    )
    exits = Exits()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = CaptureProcess(spec, theirs, exits)
    try:
        process.start()
        message = CaptureStatus.decode(await asyncio.wait_for(status.recv(), READY_TIMEOUT_S))
        assert (message.event, message.pid, message.source_id) == ("ready", process.pid, "proc")
        yield process, exits
    finally:
        await process.stop(5.0)
        ours.close()
        status.close(linger=0)
        ctx.term()
        ring.close()
        Ring.unlink(name)


def run(tmp_path: Path, scenario: Callable[[CaptureProcess, Exits], Awaitable[None]]) -> None:
    async def main() -> None:
        async with ready_process(tmp_path) as (process, exits):
            await scenario(process, exits)

    asyncio.run(main())


def test_stop_ends_a_process_that_honours_sigterm(tmp_path: Path) -> None:
    async def scenario(process: CaptureProcess, exits: Exits) -> None:
        assert process.running and "running" in repr(process)
        await process.stop(5.0)
        assert exits.seen == [0] and process.exitcode == 0  # told before stop returned
        await process.stop(5.0)  # idempotent
        process.kill("too late")  # no-op once exited
        assert exits.seen == [0] and "exited 0" in repr(process)

    run(tmp_path, scenario)


def test_stop_kills_a_process_that_ignores_sigterm_after_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A process frozen with SIGSTOP cannot act on SIGTERM: after 0.3 s it
    gets SIGKILL, and the log says so."""

    async def scenario(process: CaptureProcess, exits: Exits) -> None:
        assert process.pid is not None
        os.kill(process.pid, signal.SIGSTOP)
        with caplog.at_level(logging.WARNING, logger="mediabroker.sources.process"):
            await process.stop(0.3)
        assert exits.seen == [-signal.SIGKILL]
        assert f"capture process {process.pid} ignored SIGTERM for 0.3 s; killing it" in caplog.text

    run(tmp_path, scenario)


def test_kill_logs_why_and_the_owner_hears_of_the_exit_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(process: CaptureProcess, exits: Exits) -> None:
        with caplog.at_level(logging.WARNING, logger="mediabroker.sources.process"):
            process.kill("it stalled")
        await asyncio.wait_for(exits.exited.wait(), READY_TIMEOUT_S)
        assert exits.seen == [-signal.SIGKILL]
        assert "source proc: it stalled; killing it" in caplog.text

    run(tmp_path, scenario)
