"""Running one cell: a producer, N reader processes, one measurement window.

Design note. Readers start, prove the path works (one frame each) and say
ready; then the orchestrator picks a window on CLOCK_MONOTONIC, which every
process shares, and sends it to them. It samples the producer's CPU time
(every process psutil finds, read from the kernel's per-process CPU clocks)
and frame count at both edges; each
reader samples its own CPU time (getrusage, all its threads) and records a
latency per frame. Waiting for the window's edges is the one place the
bench sleeps: that is the measurement, not a wait for a condition.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Protocol

import numpy as np
import psutil

from mediastream.ring import SHM_DIR, Ring, VideoFormat

from .daemon import BenchDaemon, process_cpu_s
from .futex import FutexSegment
from .producers import producer_main
from .reader import reader_main
from .receivers import FrameMessage
from .specs import DAEMON_PATHS, Cell, CellResult, ProducerSpec, ReaderReport, ReaderSpec

__all__ = ["BenchEnv", "CellError", "bench_env", "run_cell"]

RING_SLOTS = 8  # the daemon's default (BrokerConfig.ring_slots)
QUEUE_FRAMES = 2  # per-reader multiprocessing.Queue bound
SETTLE_S = 0.25  # readers drain what queued up while the others got ready
READY_TIMEOUT_S = 30.0
COLLECT_SLACK_S = 15.0
JOIN_TIMEOUT_S = 10.0
IDLE_CLOSE_S = 1.0  # the bench daemon's grace before an unused source closes


class CellError(RuntimeError):
    """A cell could not be measured; the message says which process failed and why."""


@dataclass
class BenchEnv:
    """What every cell of one run shares: a work dir, a shm prefix, maybe a daemon."""

    work_dir: Path
    prefix: str
    context: SpawnContext = field(default_factory=lambda: multiprocessing.get_context("spawn"))
    daemon: BenchDaemon | None = None


@contextlib.contextmanager
def bench_env(with_daemon: bool) -> Iterator[BenchEnv]:
    """A work dir and prefix of this run's own, and a ready daemon if asked.
    On exit: stops everything, removes the work dir, and raises CellError if a
    segment or process was left behind (after removing it)."""
    work_dir = Path(tempfile.mkdtemp(prefix="mbbench-"))
    env = BenchEnv(work_dir, f"mbbench{os.getpid()}.")
    try:
        if with_daemon:
            env.daemon = BenchDaemon(work_dir, env.prefix, IDLE_CLOSE_S)
            env.daemon.wait_ready()
        yield env
    finally:
        if env.daemon is not None:
            env.daemon.close()
        shutil.rmtree(work_dir, ignore_errors=True)
        _check_nothing_left(env.prefix)


def _check_nothing_left(prefix: str) -> None:
    segments = sorted(SHM_DIR.glob(prefix + "*"))
    for path in segments:
        path.unlink(missing_ok=True)
    children = [p for p in psutil.Process().children(recursive=True) if not _is_tracker(p)]
    for child in children:
        child.kill()
    if segments or children:
        raise CellError(
            f"left behind (now removed): segments {[p.name for p in segments]}, "
            f"processes {[c.pid for c in children]}"
        )


def _is_tracker(process: psutil.Process) -> bool:
    try:
        return "resource_tracker" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return True


# -- producers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    at_ns: int
    cpu_s: dict[str, float]  # by part: "main", "capture", "other" (daemon), "writer"
    frames: int


class Producer(Protocol):
    endpoint: str
    ring_name: str
    endpoint_known: bool  # before the producer is up: readers may start with it

    def wait_bound(self) -> None: ...

    def settle(self) -> None: ...

    def pids(self) -> dict[str, int]: ...

    def sample(self) -> Sample: ...

    def close(self) -> None: ...


class DaemonProducer:
    """The daemon and its capture process; frames counted on the source's ring."""

    def __init__(self, env: BenchEnv) -> None:
        assert env.daemon is not None
        self._daemon = env.daemon
        self.endpoint = str(env.daemon.run_dir)
        self.ring_name = ""
        self.endpoint_known = True
        self._ring: Ring | None = None

    def wait_bound(self) -> None:
        pass

    def settle(self) -> None:
        """Wait until the source the readers share is the only one (an idle one
        from the previous cell may still be closing), then map its ring."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(names := _segments(self._daemon.prefix)) != 1:
            if time.monotonic() > deadline:
                raise CellError(f"the daemon's segments did not settle to one: {names}")
            time.sleep(0.02)  # another process's state: nothing to block on
        self._ring = Ring.open(names[0])

    def pids(self) -> dict[str, int]:
        return self._daemon.tree.roles()

    def sample(self) -> Sample:
        assert self._ring is not None
        frames = int(self._ring.header["newest"])
        return Sample(time.monotonic_ns(), self._daemon.tree.cpu_parts(), frames)

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()


def _segments(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(prefix + "*"))


class SpawnedProducer:
    """A producer process of the bench's own (see `bench.producers`). The ring
    and the futex segment are created here, before it starts, and unlinked here."""

    def __init__(self, env: BenchEnv, cell: Cell, queues: list[Queue[FrameMessage]]) -> None:
        self.ring_name = ""
        self._ring: Ring | None = None
        self._sent = env.context.RawValue("Q", 0)
        self._what = f"the {cell.path} producer"
        self.endpoint = _endpoint(env.work_dir, cell)
        self.endpoint_known = "*" not in self.endpoint
        try:
            self._create_segment(env, cell)
            self._process, self._conn = self._start(env, cell, queues)
        except BaseException:
            self._close_ring()
            raise
        self._pid = self._process.pid or 0

    def _create_segment(self, env: BenchEnv, cell: Cell) -> None:
        if cell.path == "ring":
            self.ring_name = f"{env.prefix}ring-{cell.size}"
            fmt = VideoFormat(cell.width, cell.height)
            self._ring = Ring.create(self.ring_name, fmt, RING_SLOTS)
        elif cell.path == "futex":
            self.ring_name = f"{env.prefix}futex"
            FutexSegment(self.ring_name, create=True).close()

    def _start(
        self, env: BenchEnv, cell: Cell, queues: list[Queue[FrameMessage]]
    ) -> tuple[SpawnProcess, Connection]:
        size = (cell.width, cell.height)
        spec = ProducerSpec(cell.path, *size, cell.fps, self.endpoint, self.ring_name, os.getpid())
        mine, theirs = env.context.Pipe()
        process = env.context.Process(
            target=producer_main, args=(spec, theirs, self._sent, queues), name=f"bench-{cell.path}"
        )
        process.start()
        theirs.close()
        return process, mine

    def wait_bound(self) -> None:
        """Block until the producer bound its endpoint (it sends the one it got). Idempotent."""
        if self._conn.closed:
            return
        try:
            self.endpoint = str(_receive(self._conn, READY_TIMEOUT_S, self._what))
        finally:
            self._conn.close()

    def settle(self) -> None:
        pass

    def pids(self) -> dict[str, int]:
        return {"writer": self._pid}

    def sample(self) -> Sample:
        frames = int(self._ring.header["newest"]) if self._ring is not None else self._sent.value
        return Sample(time.monotonic_ns(), {"writer": process_cpu_s(self._pid)}, frames)

    def close(self) -> None:
        self._conn.close()
        _stop(self._process)
        self._close_ring()

    def _close_ring(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.ring_name:
            Ring.unlink(self.ring_name)


def _endpoint(work_dir: Path, cell: Cell) -> str:
    if cell.path == "imagezmq":
        return "tcp://127.0.0.1:*"  # imagezmq's documented transport; the OS picks the port
    return f"ipc://{work_dir / cell.path}"


def _receive(conn: Connection, timeout: float, what: str) -> object:
    if not conn.poll(timeout):
        raise CellError(f"{what} said nothing within {timeout:g} s")
    try:
        return conn.recv()
    except EOFError:
        raise CellError(f"{what} exited before it was ready") from None


def _reader_message(
    conn: Connection, deadline: float, what: str
) -> tuple[str, ReaderReport | None]:
    """("ready", None) or ("report", report) from a reader, by the deadline."""
    message = _receive(conn, max(0.0, deadline - time.monotonic()), what)
    if not (isinstance(message, tuple) and len(message) == 2):
        raise CellError(f"{what} sent {message!r}")
    kind, report = message
    return str(kind), report if isinstance(report, ReaderReport) else None


def _stop(process: SpawnProcess) -> None:
    """SIGTERM (the process finishes its loop), then SIGKILL after the deadline."""
    if process.is_alive():
        process.terminate()
        process.join(JOIN_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join(JOIN_TIMEOUT_S)
    process.close()


def open_producer(env: BenchEnv, cell: Cell, queues: list[Queue[FrameMessage]]) -> Producer:
    if cell.path in DAEMON_PATHS:
        return DaemonProducer(env)
    return SpawnedProducer(env, cell, queues)


# -- readers -----------------------------------------------------------------


class ReaderGroup:
    """The cell's reader processes and a pipe to each."""

    def __init__(
        self, env: BenchEnv, cell: Cell, producer: Producer, queues: list[Queue[FrameMessage]]
    ) -> None:
        self._links: list[tuple[SpawnProcess, Connection]] = []
        for index in range(cell.readers):
            spec = ReaderSpec(
                cell.path,
                cell.width,
                cell.height,
                cell.fps,
                producer.endpoint,
                producer.ring_name,
                index,
            )
            mine, theirs = env.context.Pipe()
            frames = queues[index] if queues else None
            process = env.context.Process(
                target=reader_main, args=(spec, theirs, frames), name=f"bench-reader-{index}"
            )
            process.start()
            theirs.close()
            self._links.append((process, mine))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for index, (_, conn) in enumerate(self._links):
            what = f"reader {index}"
            kind, report = _reader_message(conn, deadline, what)
            if kind != "ready":
                error = report.error if report is not None else ""
                raise CellError(error or f"{what} failed before it was ready")

    def pids(self) -> dict[str, int]:
        return {f"reader {i}": process.pid or 0 for i, (process, _) in enumerate(self._links)}

    def start(self, window: tuple[int, int]) -> None:
        for _, conn in self._links:
            conn.send(window)

    def collect(self, timeout: float) -> list[ReaderReport]:
        deadline = time.monotonic() + timeout
        reports = []
        for index, (_, conn) in enumerate(self._links):
            _, report = _reader_message(conn, deadline, f"reader {index}")
            if report is None:
                raise CellError(f"reader {index} sent no report")
            reports.append(report)
        return reports

    def close(self) -> None:
        for process, conn in self._links:
            with contextlib.suppress(OSError):
                conn.send(None)  # a reader still waiting for its window quits
            process.join(JOIN_TIMEOUT_S)
            _stop(process)
            conn.close()


# -- one cell ------------------------------------------------------------------


EdgeHook = Callable[[str, dict[str, int]], None]
"""Called with "start" or "end" and the pids by role, right after each edge's sample."""


def run_cell(env: BenchEnv, cell: Cell, on_edge: EdgeHook | None = None) -> CellResult:
    """Measure one cell; a failure becomes the result's ``errors``, never an exception."""
    try:
        before, after, reports = _measure(env, cell, on_edge or (lambda edge, pids: None))
    except CellError as exc:
        return CellResult(cell, errors=[str(exc)])
    return summarize(cell, before, after, reports)


def _measure(
    env: BenchEnv, cell: Cell, on_edge: EdgeHook
) -> tuple[Sample, Sample, list[ReaderReport]]:
    queues: list[Queue[FrameMessage]] = []
    if cell.path == "queue":
        queues = [env.context.Queue(QUEUE_FRAMES) for _ in range(cell.readers)]
    producer = open_producer(env, cell, queues)
    try:
        if not producer.endpoint_known:
            producer.wait_bound()  # imagezmq: the OS picks the port
        readers = ReaderGroup(env, cell, producer, queues)
        try:
            producer.wait_bound()
            readers.wait_ready(READY_TIMEOUT_S)
            producer.settle()
            start_ns = time.monotonic_ns() + int(SETTLE_S * 1e9)
            end_ns = start_ns + int(cell.duration_s * 1e9)
            readers.start((start_ns, end_ns))
            pids = {**producer.pids(), **readers.pids()}
            before = _sample_at(producer, start_ns)
            on_edge("start", pids)
            after = _sample_at(producer, end_ns)
            on_edge("end", pids)
            return before, after, readers.collect(cell.duration_s + COLLECT_SLACK_S)
        finally:
            readers.close()
    finally:
        producer.close()
        for frame_queue in queues:
            frame_queue.close()


def _sample_at(producer: Producer, at_ns: int) -> Sample:
    delay_ns = at_ns - time.monotonic_ns()
    if delay_ns > 0:
        time.sleep(delay_ns / 1e9)
    return producer.sample()


def summarize(cell: Cell, before: Sample, after: Sample, reports: list[ReaderReport]) -> CellResult:
    result = CellResult(cell, errors=[r.error for r in reports if r.error])
    _summarize_producer(result, before, after)
    good = [r for r in reports if r.frames > 0]
    if not good:
        result.errors.append("no reader delivered a frame in the window")
        return result
    latencies = np.concatenate([r.latencies_ns for r in good])
    result.p50_us, result.p99_us = (float(v) / 1e3 for v in np.percentile(latencies, [50, 99]))
    per_reader = [r.cpu_s / r.frames * 1e6 for r in good]
    result.reader_us = float(np.mean(per_reader))
    result.total_us = result.producer_us + float(np.sum(per_reader))
    result.fps_per_reader = float(np.mean([r.frames for r in good])) / cell.duration_s
    seen = sum(r.frames + r.dropped for r in good)
    result.dropped_pct = 100.0 * sum(r.dropped for r in good) / seen
    result.torn = sum(r.torn for r in good)
    result.samples = int(latencies.size)
    result.reader_memory = [_memory(r) for r in reports]
    if cell.path == "daemon-pair":
        result.paired_p50_us = paired_p50(good)
    return result


def paired_p50(reports: list[ReaderReport]) -> dict[str, float]:
    """p50 latency of the ``read()`` readers (even) and the ``aread()`` readers
    (odd) of a pair cell over the frames both got: the same capture timestamps,
    so the difference is what ``aread()`` adds, with the render taken out exactly."""
    halves = {"read": [r for r in reports if r.index % 2 == 0],
              "aread": [r for r in reports if r.index % 2]}  # fmt: skip
    if not all(halves.values()):
        return {}
    seqs = {k: np.concatenate([r.seqs for r in v]) for k, v in halves.items()}
    common = np.intersect1d(seqs["read"], seqs["aread"])
    found = {}
    for kind, group in halves.items():
        latencies = np.concatenate([r.latencies_ns for r in group])
        kept = latencies[np.isin(seqs[kind], common)]
        if kept.size:
            found[kind] = float(np.percentile(kept, 50)) / 1e3
    return found if len(found) == 2 else {}


def _summarize_producer(result: CellResult, before: Sample, after: Sample) -> None:
    frames = after.frames - before.frames
    elapsed_s = (after.at_ns - before.at_ns) / 1e9
    result.produced_fps = frames / elapsed_s if elapsed_s > 0 else 0.0
    if frames <= 0:
        result.errors.append("the producer made no frame in the window")
        return
    parts = {name: after.cpu_s[name] - before.cpu_s.get(name, 0.0) for name in after.cpu_s}
    result.producer_parts_us = {name: cpu / frames * 1e6 for name, cpu in parts.items()}
    result.producer_us = sum(result.producer_parts_us.values())


def _memory(report: ReaderReport) -> dict[str, int]:
    return {
        "pid": report.pid,
        "rss_start": report.rss_start,
        "rss_end": report.rss_end,
        "fds_start": report.fds_start,
        "fds_end": report.fds_end,
    }
