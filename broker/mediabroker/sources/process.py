"""One capture process as the daemon sees it: spawn, exit, stop, kill.

Design note. This is the process handle only, as uvicorn's
``supervisors.multiprocess.Process`` is: it starts one process with the
``spawn`` context (never fork a process with live ZeroMQ contexts), watches
its exit sentinel on the running asyncio loop, stops it gracefully then
forcefully, and tells its owner once it has exited and been reaped. Its
fd 2 (FFmpeg's and OpenCV's chatter, its own log lines) comes to the
daemon's log through `ChildOutput`, rate-limited. What
to do then (restart with backoff, end the source) is `Source`'s, with
`RestartPolicy`. A new process gets a new handle; a handle is never reused.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from mediabroker.capture.main import CaptureSpec, capture_main
from mediabroker.childlog import ChildLog, ChildOutput

__all__ = ["CaptureProcess"]

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")


class CaptureProcess:
    """The capture process for ``spec``, started by `start` on the running
    loop. ``on_exit`` is called once, on the loop, after it exited and was
    reaped (`exitcode` is then set)."""

    def __init__(
        self,
        spec: CaptureSpec,
        channel: socket.socket,
        on_exit: Callable[[CaptureProcess], None],
        child_log: ChildLog | None = None,
    ) -> None:
        """``channel`` is the process's end of its hold channel
        (`mediabroker.sources.reader_files`); it is closed here once handed over.
        ``child_log`` logs what it writes to fd 2 (its source's, shared by the
        source's processes; default: one of its own, flushed at its exit)."""
        self.spec = spec
        self._channel = channel
        self.pid: int | None = None
        self.exitcode: int | None = None  # negative: killed by that signal
        self._on_exit = on_exit
        self._process: Any = None  # multiprocessing.Process: untyped in typeshed's spawn context
        self._exited = asyncio.Event()
        self._own_log = child_log is None
        log = child_log or ChildLog.for_backend(spec.source_id, spec.backend.params)
        self._output = ChildOutput(log)

    @property
    def running(self) -> bool:
        """Started and not yet reaped."""
        return self._process is not None and not self._exited.is_set()

    def start(self) -> None:
        """Spawn the process and watch for its exit. Call once."""
        assert self._process is None, "a CaptureProcess starts once"
        process = _SPAWN.Process(
            target=capture_main,
            args=(self.spec, self._channel, self._output.theirs),
            name=f"capture-{self.spec.source_id}",
        )
        try:
            process.start()
        except BaseException:
            self._output.close()
            raise
        finally:
            self._channel.close()  # the child has its own copy now
        self._output.start()
        self._process, self.pid = process, process.pid
        asyncio.get_running_loop().add_reader(process.sentinel, self._reap)
        log.info("source %s: capture process %d started", self.spec.source_id, self.pid)

    def _reap(self) -> None:
        process = self._process
        asyncio.get_running_loop().remove_reader(process.sentinel)
        process.join()
        self.exitcode = process.exitcode
        process.close()  # its sentinel fd now, not whenever the collector runs
        self._output.close()  # after the exit: all it wrote is in the socket
        if self._own_log:
            self._output.child_log.flush()
        self._exited.set()
        self._on_exit(self)

    def kill(self, why: str) -> None:
        """SIGKILL now, logging ``why``; the exit reaches ``on_exit`` as any
        other. No-op unless running."""
        if not self.running:
            return
        log.warning("source %s: %s; killing it", self.spec.source_id, why)
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)

    async def stop(self, deadline_s: float) -> None:
        """SIGTERM, then SIGKILL with a log line if the process has not exited
        within ``deadline_s``; returns once it has exited (after ``on_exit``).
        Idempotent; no-op unless running."""
        if not self.running:
            return
        self._process.terminate()
        try:
            await asyncio.wait_for(self._exited.wait(), deadline_s)
        except TimeoutError:
            log.warning(
                "source %s: capture process %d ignored SIGTERM for %.1f s; killing it",
                self.spec.source_id,
                self.pid,
                deadline_s,
            )
            assert self.pid is not None
            os.kill(self.pid, signal.SIGKILL)
            await self._exited.wait()

    def __repr__(self) -> str:
        if self._process is None:
            state = "new"
        elif self.running:
            state = "running"
        else:
            state = f"exited {self.exitcode}"
        return f"<CaptureProcess {self.spec.source_id} pid={self.pid} {state}>"
