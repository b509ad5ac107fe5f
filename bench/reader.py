"""A reader process: reads one transport over a window the orchestrator sets.

Protocol over ``conn``: the reader sends ``("ready", None)`` once its first
frame arrived (or ``("report", ReaderReport)`` with an error), receives
``(start_ns, end_ns)`` (CLOCK_MONOTONIC, the same clock in every process) or
None to quit, reads until the window ends and sends ``("report", report)``.
"""

from __future__ import annotations

import os
import resource
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue

import numpy as np
import psutil

from .receivers import FrameMessage, Receiver, open_receiver
from .specs import ReaderReport, ReaderSpec

__all__ = ["reader_main"]


def reader_main(spec: ReaderSpec, conn: Connection, frames: Queue[FrameMessage] | None) -> None:
    """Entry point of a reader process (spawned)."""
    report = ReaderReport(spec.index, pid=os.getpid())
    try:
        receiver = open_receiver(spec, frames)
    except Exception as exc:  # any failure is the measurement's result: report it
        report.error = f"reader {spec.index} could not start: {exc!r}"
        conn.send(("report", report))
        return
    try:
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
    if window is not None:
        _measure(receiver, spec, window, report)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _measure(
    receiver: Receiver, spec: ReaderSpec, window: tuple[int, int], report: ReaderReport
) -> None:
    start_ns, end_ns = window
    latencies = np.ones(spec.max_samples, np.int64)  # touched now, so RSS stays flat
    seq, _, _ = receiver.receive()
    while time.monotonic_ns() < start_ns:  # drain what queued up while others got ready
        seq, _, _ = receiver.receive()
    me = psutil.Process()
    report.rss_start, report.fds_start = me.memory_info().rss, me.num_fds()
    cpu_start = _cpu_s()
    count = 0
    while True:
        current, latency, intact = receiver.receive()
        latencies[count % spec.max_samples] = latency
        count += 1
        report.dropped += max(0, current - seq - 1)
        report.torn += not intact
        seq = current
        if time.monotonic_ns() >= end_ns:
            break
    report.cpu_s = _cpu_s() - cpu_start
    report.rss_end, report.fds_end = me.memory_info().rss, me.num_fds()
    report.frames = count
    report.latencies_ns = latencies[: min(count, spec.max_samples)].copy()
