"""A reader process: reads one transport over a window the orchestrator sets.

Protocol over ``conn``: the reader sends ``("ready", None)`` once its first
frame arrived (or ``("report", ReaderReport)`` with an error), receives
``(start_ns, end_ns)`` (CLOCK_MONOTONIC, the same clock in every process) or
None to quit, reads until the window ends and sends ``("report", report)``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue

import numpy as np
import psutil

from .receivers import (
    AsyncReceiver,
    DaemonReceiver,
    FrameMessage,
    Received,
    Receiver,
    open_receiver,
)
from .specs import ReaderReport, ReaderSpec

__all__ = ["reader_main"]


def reader_main(spec: ReaderSpec, conn: Connection, frames: Queue[FrameMessage] | None) -> None:
    """Entry point of a reader process (spawned). ``daemon-async`` readers run
    the whole protocol inside ``asyncio.run`` and wait with ``await track.aread()``."""
    report = ReaderReport(spec.index, pid=os.getpid())
    try:
        receiver = open_receiver(spec, frames)
    except Exception as exc:  # any failure is the measurement's result: report it
        report.error = f"reader {spec.index} could not start: {exc!r}"
        conn.send(("report", report))
        return
    try:
        if spec.reads_with == "daemon-async":
            assert isinstance(receiver, DaemonReceiver)
            asyncio.run(_arun(receiver, spec, conn, report))
        else:
            _run(receiver, spec, conn, report)
    except Exception as exc:
        report.error = f"reader {spec.index}: {exc!r}"
    finally:
        receiver.close()
    conn.send(("report", report))


def _run(receiver: Receiver, spec: ReaderSpec, conn: Connection, report: ReaderReport) -> None:
    receiver.receive()  # the path works end to end
    conn.send(("ready", None))
    window: tuple[int, int] | None = conn.recv()
    if window is None:
        return
    start_ns, end_ns = window
    recorder = _Recorder(spec, report, end_ns)
    seq, _, _ = receiver.receive()
    while time.monotonic_ns() < start_ns:  # drain what queued up while others got ready
        seq, _, _ = receiver.receive()
    recorder.begin(seq)
    while recorder.record(receiver.receive()):
        pass
    recorder.end()


async def _arun(
    receiver: AsyncReceiver, spec: ReaderSpec, conn: Connection, report: ReaderReport
) -> None:
    """`_run` in an event loop: the same protocol and figures, ``areceive``
    instead of ``receive``. Waiting for the window blocks the loop: nothing
    else runs in it, and the first read after it takes the newest frame."""
    await receiver.areceive()
    conn.send(("ready", None))
    window: tuple[int, int] | None = conn.recv()
    if window is None:
        return
    start_ns, end_ns = window
    recorder = _Recorder(spec, report, end_ns)
    seq, _, _ = await receiver.areceive()
    while time.monotonic_ns() < start_ns:
        seq, _, _ = await receiver.areceive()
    recorder.begin(seq)
    while recorder.record(await receiver.areceive()):
        pass
    recorder.end()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


class _Recorder:
    """A reader's figures over the window: latency and sequence per frame,
    its own CPU time, RSS and open fds at both edges."""

    def __init__(self, spec: ReaderSpec, report: ReaderReport, end_ns: int) -> None:
        self._report = report
        self._end_ns = end_ns
        self._size = spec.max_samples
        self._latencies = np.ones(spec.max_samples, np.int64)  # touched now: RSS stays flat
        self._seqs = np.ones(spec.max_samples, np.int64)
        self._me = psutil.Process()
        self._seq = 0
        self._count = 0
        self._cpu_start = 0.0

    def begin(self, seq: int) -> None:
        report, me = self._report, self._me
        report.rss_start, report.fds_start = me.memory_info().rss, me.num_fds()
        self._seq = seq
        self._cpu_start = _cpu_s()

    def record(self, received: Received) -> bool:
        """Record one frame; False once the window is over."""
        current, latency, intact = received
        self._latencies[self._count % self._size] = latency
        self._seqs[self._count % self._size] = current
        self._count += 1
        self._report.dropped += max(0, current - self._seq - 1)
        self._report.torn += not intact
        self._seq = current
        return time.monotonic_ns() < self._end_ns

    def end(self) -> None:
        report, me = self._report, self._me
        report.cpu_s = _cpu_s() - self._cpu_start
        report.rss_end, report.fds_end = me.memory_info().rss, me.num_fds()
        report.frames = self._count
        report.latencies_ns = self._latencies[: min(self._count, self._size)].copy()
        report.seqs = self._seqs[: min(self._count, self._size)].copy()
